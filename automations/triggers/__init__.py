"""What starts journeys on time: date scans, date rules and cron schedules."""
