#!/usr/bin/env bash
# The main job on the embedded default: SQLite, in-process broker, local outbox.
# Runs in a fresh ./.demo folder so it never touches your own data.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
loyalty="$here/../.venv/bin/loyalty"
rm -rf "$here/../.demo" && mkdir -p "$here/../.demo" && cd "$here/../.demo"
export DATABASE_URL=sqlite:///./loyalty.db OUTBOX_DIR=./outbox REDIS_URL= LOG_LEVEL=WARNING
export DEFAULT_PHONE_REGION=US

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Create the database"
"$loyalty" db upgrade
step "Import the sample members (examples/members.csv)"
"$loyalty" members import "$here/members.csv"
step "Import them again: nothing changes"
"$loyalty" members import "$here/members.csv"
step "Process the sample events (examples/events.jsonl; the last line repeats the first)"
"$loyalty" events ingest "$here/events.jsonl"
step "Emit one more order by hand, twice with the same id"
"$loyalty" events emit order.completed --member cust-1005 --id pos-77 \
  --data '{"order_id": "POS-77", "total": "4599.00", "currency": "INR"}'
"$loyalty" events emit order.completed --member cust-1005 --id pos-77 \
  --data '{"order_id": "POS-77", "total": "4599.00", "currency": "INR"}'
step "Balances"
for member in cust-1001 cust-1003 cust-1004 cust-1005; do "$loyalty" points balance "$member"; done
step "Points history of cust-1001"
"$loyalty" points history cust-1001
step "Member cust-1003 as the CRM will see it"
"$loyalty" members show cust-1003 --json
step "Scheduled jobs"
"$loyalty" scheduler --list
step "Dead letters"
"$loyalty" dlq list
