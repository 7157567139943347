#!/usr/bin/env python3
"""Retrying an occproxy version conflict with psycopg2: re-read, re-apply, at most 3 attempts.

Usage: retry_psycopg2.py DSN ACCOUNT_ID AMOUNT [THINK_SECONDS]
Adds AMOUNT to accounts.balance of ACCOUNT_ID through occproxy. THINK_SECONDS stands for the time a
user spends between seeing a value and saving a change (default 0).
"""
import random
import sys
import time

import psycopg2
import psycopg2.errors

ATTEMPTS = 3
BASE_DELAY = 0.05  # seconds; doubles at each retry
MAX_DELAY = 1.0


def backoff(attempt):
    """Exponential backoff with full jitter: a random wait in [0, BASE_DELAY * 2^(attempt-1)]."""
    time.sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))))


def deposit(conn, account_id, amount, think):
    """One attempt: read the row, decide, write, in one transaction."""
    with conn, conn.cursor() as cur:  # commits, or rolls back on an exception
        cur.execute("SELECT balance FROM accounts WHERE id = %s", (account_id,))
        (balance,) = cur.fetchone()
        print(f"read balance {balance}", flush=True)
        time.sleep(think)
        cur.execute("UPDATE accounts SET balance = %s WHERE id = %s", (balance + amount, account_id))
        return balance + amount


def main():
    dsn, account_id, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    think = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    conn = psycopg2.connect(dsn)
    last = None
    for attempt in range(1, ATTEMPTS + 1):
        print(f"attempt {attempt}", flush=True)
        try:
            balance = deposit(conn, account_id, amount, think)
            print(f"saved: balance is now {balance}", flush=True)
            return 0
        # occproxy reports a stale write as serialization_failure (SQLSTATE 40001, conflict_sqlstate).
        except psycopg2.errors.SerializationFailure as e:
            last = e
            print(f"conflict: {e.diag.message_detail}", flush=True)
            if attempt < ATTEMPTS:
                backoff(attempt)
    # Out of retries: say what happened and that nothing was saved; the DBA finds the diff in the
    # proxy's GET /conflicts (and its audit log).
    print(f"Your deposit of {amount} to account {account_id} was not saved: the account was changed "
          f"by someone else {ATTEMPTS} times while we were saving it. {last.diag.message_detail} "
          "Please look at the current balance and try again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
