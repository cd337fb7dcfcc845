#!/usr/bin/env bash
# The main job on the embedded default: SQLite, in-process broker, local outbox.
# Runs in a fresh ./.demo folder so it never touches your own data.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
loyalty="$here/../.venv/bin/loyalty"
rm -rf "$here/../.demo" && mkdir -p "$here/../.demo" && cd "$here/../.demo"
export DATABASE_URL=sqlite:///./loyalty.db OUTBOX_DIR=./outbox REDIS_URL= LOG_LEVEL=WARNING
export JOURNEYS_DIR="$here/../journeys"
export DEFAULT_PHONE_REGION=US

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Create the database"
"$loyalty" db upgrade
step "Import the sample members (examples/members.csv)"
"$loyalty" members import "$here/members.csv"
step "Import them again: nothing changes"
"$loyalty" members import "$here/members.csv"
step "Validate and publish the journeys (journeys/)"
"$loyalty" journeys validate
"$loyalty" journeys publish
step "Process the sample events (examples/events.jsonl; the last line repeats the first)"
"$loyalty" events ingest "$here/events.jsonl"
step "Emit one more order by hand, twice with the same id"
"$loyalty" events emit order.completed --member cust-1005 --id pos-77 \
  --data '{"order_id": "POS-77", "total": "4599.00", "currency": "INR"}'
"$loyalty" events emit order.completed --member cust-1005 --id pos-77 \
  --data '{"order_id": "POS-77", "total": "4599.00", "currency": "INR"}'
step "A new member joins: the welcome journey sends an email (local outbox)"
"$loyalty" events emit member.enrolled --member cust-1006 --id signup-1006
step "Journeys and their enrollments"
"$loyalty" journeys list
step "Messages in the local outbox (./.demo/outbox)"
find outbox -type f | sort
step "Preview: the birthday journey as cust-1002 would get it"
"$loyalty" journeys preview birthday_bonus --member cust-1002
step "Simulate the next 45 days (virtual clock, nothing sent)"
"$loyalty" journeys simulate --from "$(date -u +%F)" --to "$(date -u -d '+45 days' +%F)"
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
