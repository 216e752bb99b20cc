#!/usr/bin/env bash
# Runs rclone's own integration suite for its onedrive backend (fstests,
# nothing skipped) against a fresh Ferry server.
#
#   scripts/rclone-fstests.sh [--no-ryan] [--db postgres://…] [-- extra test flags]
#
# By default a user ryan@contoso.com exists (the address rclone's permission
# tests invite), so those tests run; with --no-ryan it does not, and they
# skip on sharingFailed. --db runs the server on that (empty) PostgreSQL
# database instead of SQLite. The rclone test binary is built once from the
# Go module proxy into $RCLONE_WORK (default ~/.cache/ferry-rclone; a cold
# build takes about 10 minutes on two cores) and is never put into this
# repository. Prints the PASS/SKIP/FAIL counts; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

RCLONE_VERSION="${RCLONE_VERSION:-v1.76.0}"
RCLONE_WORK="${RCLONE_WORK:-$HOME/.cache/ferry-rclone}"
ryan=1
db=""
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--no-ryan) ryan=0 ;;
	--db) db="$2"; shift ;;
	--) shift; extra=("$@"); break ;;
	*) echo "usage: $0 [--no-ryan] [--db DSN] [-- test flags]" >&2; exit 2 ;;
	esac
	shift
done

src="$RCLONE_WORK/rclone-$RCLONE_VERSION"
bin="$RCLONE_WORK/onedrive-$RCLONE_VERSION.test"
if [ ! -x "$bin" ]; then
	mkdir -p "$RCLONE_WORK"
	dir=$(cd /tmp && go mod download -json "github.com/rclone/rclone@$RCLONE_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
	(cd "$src" && nice go test -c -o "$bin" ./backend/onedrive)
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/ferry" ./cmd/ferry
store=(--data "$tmp/data")
[ -n "$db" ] && store=(--db "$db")
if [ "$ryan" = 1 ]; then
	"$tmp/ferry" user create ryan --email ryan@contoso.com "${store[@]}" >/dev/null
fi
token=$("$tmp/ferry" token create --user tester "${store[@]}")
"$tmp/ferry" serve "${store[@]}" --data "$tmp/data" --listen 127.0.0.1:0 >"$tmp/serve.log" 2>&1 &
pid=$!
base=""
for _ in $(seq 1 100); do
	base=$(sed -n 's/^ferry: listening on \(http:[^ ]*\).*/\1/p' "$tmp/serve.log")
	[ -n "$base" ] && break
	sleep 0.1
done
[ -n "$base" ] || { cat "$tmp/serve.log" >&2; exit 1; }
drive=$(curl -fsS -H "Authorization: Bearer $token" "$base/v1.0/me/drive" |
	sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
cat >"$tmp/rclone.conf" <<EOF
[TestOneDrive]
type = onedrive
tenant_url = $base
tenant_api_version = v1.0
drive_id = $drive
drive_type = business
token = {"access_token":"$token","token_type":"Bearer","expiry":"2099-01-01T00:00:00Z"}
EOF

# fstests looks for its config files relative to the working directory.
status=0
(cd "$src/backend/onedrive" && RCLONE_CONFIG="$tmp/rclone.conf" "$bin" -test.v -test.timeout 30m \
	-test.run TestIntegration -remote TestOneDrive: "${extra[@]}") >"$tmp/test.log" 2>&1 || status=$?
grep -E '^\s*--- (FAIL|SKIP)' "$tmp/test.log" || true
for r in PASS SKIP FAIL; do
	printf '%s %s\n' "$r" "$(grep -cE "^\s*--- $r" "$tmp/test.log" || true)"
done
if [ "$status" != 0 ]; then
	cp "$tmp/test.log" "$RCLONE_WORK/last-failure.log"
	echo "failed: the test log is in $RCLONE_WORK/last-failure.log" >&2
fi
exit "$status"
