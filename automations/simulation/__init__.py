"""The simulator's parts: copying the live state, the virtual clock's loop, simulated email
engagement, and the timeline read back from the copy (`automations.simulate` runs them)."""
