#!/usr/bin/env bash
# Prints DATABASE_URL=… / REDIS_URL=… for `make test` when local servers answer and the variables are unset.
# Without them the test fixtures start the same embedded servers that `actor-admin dev` uses.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${DATABASE_URL:-}" ] && port_open 5432; then echo "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres"; fi
if [ -z "${REDIS_URL:-}" ] && port_open 6379; then echo "REDIS_URL=redis://127.0.0.1:6379/0"; fi
exit 0
