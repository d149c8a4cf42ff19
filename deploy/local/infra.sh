#!/usr/bin/env bash
# Local development infrastructure for Vafa: PostgreSQL + single-node KRaft Kafka,
# without Docker. See deploy/local/README.md.
#
#   deploy/local/infra.sh install | up | down | status | reset | psql [args...]
set -euo pipefail

# ---------------------------------------------------------------------------
# Paths and settings
# ---------------------------------------------------------------------------
SCRIPT_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_CONF_SRC="$SCRIPT_DIR/kafka"

STATE_DIR="${VAFA_STATE_DIR:-$REPO_DIR/.local}"
CACHE_DIR="${VAFA_CACHE_DIR:-$HOME/.cache/vafa}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
case "$CACHE_DIR" in /*) ;; *) CACHE_DIR="$PWD/$CACHE_DIR" ;; esac

PG_PORT="${VAFA_PG_PORT:-55432}"
PG_SUPERUSER="vafa"
PG_PASSWORD="vafa"
PG_OS_USER="postgres"          # only used when running as root
PG_DIR="$STATE_DIR/pg"
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG_DIR="$PG_DIR/log"
PG_LOG="$PG_LOG_DIR/postgresql.log"
PG_START_TIMEOUT="${VAFA_PG_START_TIMEOUT:-60}"
DATABASES="${VAFA_DATABASES:-vafa_profile vafa_loyalty vafa_segmentation vafa_messaging vafa_ticketing vafa_inventory}"

KAFKA_VERSION="4.1.2"
KAFKA_PORT="${VAFA_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${VAFA_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_CACHE="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_MARKER="$KAFKA_CACHE/.libs-complete"
KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOG_DIR="$KAFKA_DIR/logs"
KAFKA_SERVER_LOG="$KAFKA_LOG_DIR/server.log"
KAFKA_CONSOLE_LOG="$KAFKA_LOG_DIR/kafka.out"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_FORMAT_INFO="$KAFKA_DIR/formatted.env"
KAFKA_START_TIMEOUT="${VAFA_KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT=30

JAVA_BIN=""        # set by ensure_java
PG_BIN=""          # set by find_pg_bin
APT_UPDATED=0

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
log()  { printf '%s\n' "$*"; }
warn() { printf 'infra.sh: warning: %s\n' "$*" >&2; }
die()  { printf '\ninfra.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr (used on failures).
show_tail() {
  local file="$1" n="${2:-40}"
  if [[ -s "$file" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$file" >&2
    tail -n "$n" "$file" >&2 || true
    printf -- '----- end of %s -----\n' "$file" >&2
  fi
}

# Last lines of what was appended to a log after byte offset $2 (this start only).
show_new_log() {
  local file="$1" offset="$2" n="${3:-40}"
  [[ -s "$file" ]] || return 0
  (( $(stat -c %s "$file") >= offset )) || offset=0
  printf -- '----- last %s lines of %s (this start) -----\n' "$n" "$file" >&2
  tail -c +"$((offset + 1))" "$file" | tail -n "$n" >&2 || true
  printf -- '----- end of %s -----\n' "$file" >&2
}

# Serialize concurrent runs (several shells/sessions may run `up` at once).
#   take_lock <fd> <file> <what>
take_lock() {
  local fd="$1" file="$2" what="$3" waited="${VAFA_LOCK_TIMEOUT:-900}"
  mkdir -p "$(dirname "$file")"
  eval "exec $fd>>\"\$file\""
  if ! flock -n "$fd"; then
    log "infra.sh: waiting for another infra.sh run to finish ($what; lock $file) ..."
    flock -w "$waited" "$fd" || die "timed out after ${waited}s waiting for lock $file ($what)."
  fi
}

is_root() { [[ ${EUID:-$(id -u)} -eq 0 ]]; }

# Run a command as the PostgreSQL OS user (postgres refuses to run as root).
as_pg() {
  if is_root; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }

apt_install() {
  # apt_install <package>...   (apt-get update at most once per invocation)
  is_root || die "need to install: $* -- re-run as root (sudo $0 install) or install them yourself."
  command -v apt-get >/dev/null 2>&1 || die "need to install: $* -- but apt-get is not available on this machine."
  local apt_log="$CACHE_DIR/apt.log"
  mkdir -p "$CACHE_DIR"
  log "infra.sh: installing $* via apt (log: $apt_log) ..."
  export DEBIAN_FRONTEND=noninteractive
  if [[ $APT_UPDATED -eq 0 ]]; then
    if ! apt-get update >"$apt_log" 2>&1; then
      show_tail "$apt_log"
      die "apt-get update failed (full log: $apt_log)."
    fi
    APT_UPDATED=1
  fi
  if ! apt-get install -y --no-install-recommends "$@" >>"$apt_log" 2>&1; then
    show_tail "$apt_log"
    die "apt-get install $* failed (full log: $apt_log)."
  fi
}

# Major version of a java binary (8 for 1.8.x), or empty if it does not run.
java_major() {
  local out ver
  out="$("$1" -version 2>&1 | head -n 1)" || return 0
  ver="$(sed -nE 's/.*version "([^"]+)".*/\1/p' <<<"$out")"
  [[ -n "$ver" ]] || return 0
  if [[ "$ver" == 1.* ]]; then ver="${ver#1.}"; fi
  printf '%s\n' "${ver%%[^0-9]*}"
}

# Pick a java >= 17 (JAVA_HOME, PATH, /usr/lib/jvm), or empty.
find_java() {
  local c m
  for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
    [[ -n "$c" && -x "$c" ]] || continue
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && (( m >= 17 )); then
      printf '%s\n' "$c"
      return 0
    fi
  done
  return 0
}

ensure_java() {
  [[ -n "$JAVA_BIN" ]] && return 0
  JAVA_BIN="$(find_java)"
  [[ -n "$JAVA_BIN" ]] || die "no Java >= 17 found (Kafka $KAFKA_VERSION needs it). Run '$0 install' as root, or install openjdk-17-jre-headless."
}

# Newest /usr/lib/postgresql/<ver>/bin that has a postgres server binary, or empty.
newest_pg_bin() {
  local p
  p="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1 || true)"
  if [[ -n "$p" ]]; then dirname "$p"; fi
  return 0
}

find_pg_bin() {
  [[ -n "$PG_BIN" ]] && return 0
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    # An existing cluster must be run by the major version that created it.
    local v
    v="$(cat "$PG_DATA/PG_VERSION")"
    if [[ -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then
      PG_BIN="/usr/lib/postgresql/$v/bin"
      return 0
    fi
    die "the cluster in $PG_DATA was created by PostgreSQL $v, whose binaries are not installed under /usr/lib/postgresql/$v/bin. Install postgresql-$v, or run '$0 reset' (deletes local data)."
  fi
  PG_BIN="$(newest_pg_bin)"
  [[ -n "$PG_BIN" ]] || die "no PostgreSQL server found under /usr/lib/postgresql/*/bin. Run '$0 install' (as root)."
}

check_settings() {
  valid_port "$PG_PORT" || die "VAFA_PG_PORT='$PG_PORT' is not a valid port."
  valid_port "$KAFKA_PORT" || die "VAFA_KAFKA_PORT='$KAFKA_PORT' is not a valid port."
  valid_port "$KAFKA_CONTROLLER_PORT" || die "VAFA_KAFKA_CONTROLLER_PORT='$KAFKA_CONTROLLER_PORT' is not a valid port."
  [[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] || die "VAFA_KAFKA_PORT and VAFA_KAFKA_CONTROLLER_PORT must differ (both $KAFKA_PORT)."
  local sock="$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT"
  (( ${#sock} <= 100 )) || die "PostgreSQL socket path '$sock' is too long for a unix socket (max ~100 chars); set VAFA_STATE_DIR to a shorter path."
}

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------
kafka_pom_sum() { sha256sum "$KAFKA_CONF_SRC/pom.xml" | cut -d' ' -f1; }

kafka_libs_ok() {
  [[ -f "$KAFKA_MARKER" ]] && [[ "$(cat "$KAFKA_MARKER")" == "$(kafka_pom_sum)" ]] \
    && compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

install_kafka_libs() {
  kafka_libs_ok && return 0
  take_lock 8 "$KAFKA_CACHE.lock" "Kafka jar cache"
  kafka_libs_ok && return 0          # another run resolved them while we waited
  command -v mvn >/dev/null 2>&1 || die "mvn not found; run '$0 install' as root or install maven."
  mkdir -p "$KAFKA_CACHE"
  local tmp="$KAFKA_CACHE/libs.tmp.$$" mvn_log="$KAFKA_CACHE/mvn.log"
  rm -rf "$tmp"
  log "infra.sh: resolving Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS (first run only) ..."
  # JAVA_HOME for maven: use the java we found if JAVA_HOME is unset.
  local jh="${JAVA_HOME:-}"
  if [[ -z "$jh" && -n "$JAVA_BIN" ]]; then jh="$(dirname "$(dirname "$(readlink -f "$JAVA_BIN")")")"; fi
  if ! JAVA_HOME="$jh" mvn -q -B -Dstyle.color=never -f "$KAFKA_CONF_SRC/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    show_tail "$mvn_log" 60
    rm -rf "$tmp"
    die "Maven could not resolve the Kafka jars (full log: $mvn_log). Check that Maven Central is reachable (see ~/.m2/settings.xml for mirrors/proxies)."
  fi
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null \
    || { rm -rf "$tmp"; die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is not in $tmp (log: $mvn_log)."; }
  rm -f "$KAFKA_MARKER"
  if [[ -d "$KAFKA_LIBS" ]]; then mv "$KAFKA_LIBS" "$KAFKA_LIBS.old.$$"; fi
  mv "$tmp" "$KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS.old.$$"
  kafka_pom_sum >"$KAFKA_MARKER.tmp" && mv "$KAFKA_MARKER.tmp" "$KAFKA_MARKER"
}

cmd_install() {
  local pkgs=()
  if [[ -z "$(newest_pg_bin)" ]]; then pkgs+=(postgresql); fi
  if [[ -z "$(find_java)" ]]; then pkgs+=(openjdk-17-jre-headless); fi
  if ! command -v mvn >/dev/null 2>&1; then pkgs+=(maven); fi
  if (( ${#pkgs[@]} > 0 )); then
    apt_install "${pkgs[@]}"
    [[ -n "$(newest_pg_bin)" ]] || die "postgresql was installed but no server binary appeared under /usr/lib/postgresql/*/bin."
    command -v mvn >/dev/null 2>&1 || die "maven was installed but 'mvn' is not on PATH."
  fi
  JAVA_BIN=""
  ensure_java
  install_kafka_libs
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
pg_pid() {
  # PID of the running postmaster for our data dir, or empty.
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
  local pid
  pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
     && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null; then
    printf '%s\n' "$pid"
  fi
  return 0
}

pg_running() { [[ -n "$(pg_pid)" ]]; }

ensure_pg_os_user() {
  is_root || return 0
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "infra.sh: creating OS user '$PG_OS_USER' (PostgreSQL refuses to run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash "$PG_OS_USER" || die "could not create OS user '$PG_OS_USER'."
  fi
}

# Make every ancestor of $1 traversable (o+x) for the postgres OS user.
ensure_traversable() {
  is_root || return 0
  local d="$1"
  while [[ "$d" != "/" && -n "$d" ]]; do
    if [[ -d "$d" ]] && ! runuser -u "$PG_OS_USER" -- test -x "$d" 2>/dev/null; then
      warn "adding o+x to $d so the '$PG_OS_USER' user can reach $PG_DIR"
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
}

prepare_pg_dirs() {
  ensure_pg_os_user
  mkdir -p "$PG_DIR"
  if is_root; then
    ensure_traversable "$STATE_DIR"
    if [[ "$(stat -c %U "$PG_DIR")" != "$PG_OS_USER" ]]; then
      chown -R "$PG_OS_USER": "$PG_DIR"
    fi
  fi
  as_pg mkdir -p "$PG_SOCKET_DIR" "$PG_LOG_DIR"
  if is_root; then
    # Files left behind by a non-root run (or root-created) must belong to postgres.
    local d
    for d in "$PG_SOCKET_DIR" "$PG_LOG_DIR"; do
      [[ "$(stat -c %U "$d")" == "$PG_OS_USER" ]] || chown -R "$PG_OS_USER": "$d"
    done
  fi
}

pg_locale() {
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then echo "C.UTF-8"; else echo "C"; fi
}

pg_initdb() {
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  local loc pwfile initlog="$PG_LOG_DIR/initdb.log"
  loc="$(pg_locale)"
  pwfile="$(mktemp "$PG_DIR/.pwfile.XXXXXX")"
  printf '%s\n' "$PG_PASSWORD" >"$pwfile"
  if is_root; then chown "$PG_OS_USER": "$pwfile"; fi
  log "postgres: initializing cluster in $PG_DATA (locale $loc)"
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust --username="$PG_SUPERUSER" \
        --pwfile="$pwfile" --encoding=UTF8 --locale="$loc" >"$initlog" 2>&1; then
    rm -f "$pwfile"
    show_tail "$initlog"
    die "initdb failed (log: $initlog)."
  fi
  rm -f "$pwfile"
  printf "\n# Local dev settings managed by deploy/local/infra.sh\ninclude = 'vafa.conf'\n" \
    | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

write_pg_conf() {
  # Rewritten on every start so edits to this script take effect on the next start.
  as_pg tee "$PG_DATA/vafa.conf" >/dev/null <<EOF
# Managed by deploy/local/infra.sh -- regenerated on every start; do not edit.
# Tuned for a 2-core / 24 GB dev box running a test suite with many connections.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 400
superuser_reserved_connections = 3
shared_buffers = 512MB
effective_cache_size = 4GB
work_mem = 8MB
maintenance_work_mem = 256MB
wal_buffers = 16MB
max_wal_size = 2GB
min_wal_size = 256MB
checkpoint_completion_target = 0.9
random_page_cost = 1.1
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
max_parallel_maintenance_workers = 1
# Durability stays on (fsync and synchronous_commit at their safe defaults).
fsync = on
full_page_writes = on
# Logging: to $PG_LOG (via pg_ctl -l); no statement-duration logging.
log_min_duration_statement = -1
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres >/dev/null 2>&1
}

pg_up() {
  find_pg_bin
  local pid
  pid="$(pg_pid)"
  if [[ -n "$pid" ]]; then
    log "postgres: already running (pid $pid, port $PG_PORT)"
    return 0
  fi
  if port_open "$PG_PORT"; then
    die "port $PG_PORT is already in use by another process, but our PostgreSQL (data: $PG_DATA) is not running. Stop that process or set VAFA_PG_PORT."
  fi
  prepare_pg_dirs
  pg_initdb
  write_pg_conf
  log "postgres: starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  # 8>&- 9>&-: the server must not inherit (and so keep holding) our lock fds.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -W start >/dev/null 2>&1 8>&- 9>&-; then
    show_tail "$PG_LOG"
    die "pg_ctl start failed; see $PG_LOG"
  fi
  local t0=$SECONDS
  until pg_ready; do
    if (( SECONDS - t0 >= PG_START_TIMEOUT )); then
      show_tail "$PG_LOG"
      die "PostgreSQL did not accept connections on 127.0.0.1:$PG_PORT within ${PG_START_TIMEOUT}s; see $PG_LOG"
    fi
    # pg_ctl -W returns at once: notice an early death instead of waiting out the timeout.
    if (( SECONDS - t0 >= 3 )) && ! pg_running && ! pg_ready; then
      show_tail "$PG_LOG"
      die "PostgreSQL exited during startup; see $PG_LOG"
    fi
    sleep 0.3
  done
  log "postgres: ready (pid $(pg_pid), port $PG_PORT)"
}

pg_psql() {
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_SUPERUSER" "$@"
}

pg_ensure_databases() {
  local db created=()
  for db in $DATABASES; do
    [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] \
      || die "invalid database name '$db' in VAFA_DATABASES (use lowercase letters, digits, _)."
    if [[ -z "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
      if pg_psql -d postgres -c "CREATE DATABASE \"$db\" OWNER \"$PG_SUPERUSER\"" >/dev/null 2>"$PG_LOG_DIR/createdb.err"; then
        created+=("$db")
      elif [[ -z "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
        cat "$PG_LOG_DIR/createdb.err" >&2
        die "could not create database $db (log: $PG_LOG)"
      fi                                  # else: someone else created it meanwhile
    fi
  done
  if (( ${#created[@]} > 0 )); then log "postgres: created databases: ${created[*]}"; fi
  # The password is set by initdb; make sure it is there for clusters made otherwise.
  if [[ "$(pg_psql -d postgres -tAc "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = '$PG_SUPERUSER'")" == "t" ]]; then
    pg_psql -d postgres -c "ALTER ROLE \"$PG_SUPERUSER\" PASSWORD '$PG_PASSWORD'" >/dev/null
  fi
}

pg_down() {
  local pid
  pid="$(pg_pid)"
  if [[ -z "$pid" ]]; then
    log "postgres: not running"
    return 0
  fi
  find_pg_bin
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1; then
    show_tail "$PG_LOG"
    die "pg_ctl stop failed for $PG_DATA (pid $pid); see $PG_LOG"
  fi
  log "postgres: stopped (was pid $pid)"
}

# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------
kafka_pid() {
  [[ -f "$KAFKA_PID_FILE" ]] || return 0
  local pid
  pid="$(cat "$KAFKA_PID_FILE" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
    printf '%s\n' "$pid"
  fi
  return 0
}

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

render_kafka_props() {
  local tmpl="$KAFKA_CONF_SRC/server.properties.template"
  [[ -f "$tmpl" ]] || die "missing $tmpl"
  sed -e "s|\${VAFA_KAFKA_PORT}|$KAFKA_PORT|g" \
      -e "s|\${VAFA_KAFKA_CONTROLLER_PORT}|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|\${VAFA_KAFKA_DATA_DIR}|$(sed_escape "$KAFKA_DATA")|g" \
      "$tmpl" >"$KAFKA_PROPS.tmp"
  if grep -nE '^[^#]*\$\{' "$KAFKA_PROPS.tmp" >&2; then
    die "unresolved placeholders in $tmpl (lines above)."
  fi
  mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

kafka_java_common() {
  # Arguments shared by StorageTool and the broker.
  printf '%s\0' -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_CONF_SRC/log4j2.yaml" \
    "-Dkafka.logs.dir=$KAFKA_LOG_DIR" -cp "$KAFKA_LIBS/*"
}

kafka_format() {
  # Format exactly once: meta.properties marks formatted storage.
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  local fmt_log="$KAFKA_LOG_DIR/storage-format.log" cluster_id
  local -a common
  mapfile -d '' common < <(kafka_java_common)
  if ! cluster_id="$("$JAVA_BIN" "${common[@]}" kafka.tools.StorageTool random-uuid 2>>"$fmt_log")"; then
    show_tail "$fmt_log"
    die "kafka.tools.StorageTool random-uuid failed (log: $fmt_log)."
  fi
  cluster_id="$(printf '%s\n' "$cluster_id" | tail -n 1 | tr -d '[:space:]')"
  [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "unexpected cluster id '$cluster_id' from StorageTool (log: $fmt_log)."
  log "kafka: formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
  if ! "$JAVA_BIN" "${common[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$KAFKA_PROPS" --standalone >>"$fmt_log" 2>&1; then
    show_tail "$fmt_log"
    die "Kafka storage format failed (log: $fmt_log)."
  fi
  printf 'cluster_id=%s\ncontroller_port=%s\nformatted_at=%s\n' \
    "$cluster_id" "$KAFKA_CONTROLLER_PORT" "$(date -u +%FT%TZ)" >"$KAFKA_FORMAT_INFO"
}

kafka_up() {
  local pid
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    log "kafka: already running (pid $pid, port $KAFKA_PORT)"
    return 0
  fi
  rm -f "$KAFKA_PID_FILE"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p is already in use by another process, but our Kafka is not running. Stop that process or set VAFA_KAFKA_PORT / VAFA_KAFKA_CONTROLLER_PORT."
    fi
  done
  ensure_java
  kafka_libs_ok || install_kafka_libs
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOG_DIR"
  render_kafka_props
  kafka_format

  # Only log lines written after this point count for readiness.
  local log_offset=0
  [[ -f "$KAFKA_SERVER_LOG" ]] && log_offset="$(stat -c %s "$KAFKA_SERVER_LOG")"

  local -a common
  mapfile -d '' common < <(kafka_java_common)
  log "kafka: starting on 127.0.0.1:$KAFKA_PORT, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT (log: $KAFKA_SERVER_LOG)"
  printf '\n===== %s starting kafka =====\n' "$(date -u +%FT%TZ)" >>"$KAFKA_CONSOLE_LOG"
  # The wrapper writes its own pid (== the java pid after exec), even if setsid forks.
  # shellcheck disable=SC2016  # $$ / $1 / $@ are for the inner bash
  nohup setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
    "$JAVA_BIN" -Xms256m -Xmx768m -XX:+UseG1GC "${common[@]}" kafka.Kafka "$KAFKA_PROPS" \
    </dev/null >>"$KAFKA_CONSOLE_LOG" 2>&1 8>&- 9>&- &
  disown 2>/dev/null || true

  local t0=$SECONDS started=0
  while :; do
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]] && port_open "$KAFKA_PORT" && [[ -f "$KAFKA_SERVER_LOG" ]]; then
      local size
      size="$(stat -c %s "$KAFKA_SERVER_LOG")"
      (( size < log_offset )) && log_offset=0   # log rolled over
      if tail -c +"$((log_offset + 1))" "$KAFKA_SERVER_LOG" | grep -q 'Kafka Server started'; then
        started=1
        break
      fi
    fi
    if [[ -z "$pid" ]] && (( SECONDS - t0 >= 3 )); then
      show_tail "$KAFKA_CONSOLE_LOG" 10
      show_new_log "$KAFKA_SERVER_LOG" "$log_offset"
      die "Kafka exited during startup; see $KAFKA_SERVER_LOG and $KAFKA_CONSOLE_LOG"
    fi
    if (( SECONDS - t0 >= KAFKA_START_TIMEOUT )); then break; fi
    sleep 0.5
  done
  if (( ! started )); then
    show_tail "$KAFKA_CONSOLE_LOG" 10
    show_new_log "$KAFKA_SERVER_LOG" "$log_offset"
    die "Kafka did not become ready on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (pid ${pid:-none}, still running; '$0 down' stops it); see $KAFKA_SERVER_LOG"
  fi
  log "kafka: ready (pid $pid, port $KAFKA_PORT)"
}

kafka_down() {
  local pid
  pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$KAFKA_PID_FILE"
    log "kafka: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      warn "kafka (pid $pid) did not stop within ${KAFKA_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$KAFKA_PID_FILE"
  log "kafka: stopped (was pid $pid)"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
cmd_up() {
  cmd_install
  mkdir -p "$STATE_DIR"
  pg_up
  pg_ensure_databases
  kafka_up
}

cmd_down() {
  local rc=0
  pg_down || rc=$?
  kafka_down || rc=$?
  return $rc
}

cmd_status() {
  local rc=0 pid state
  pid="$(pg_pid)"
  if [[ -n "$pid" ]]; then
    state="running"
    port_open "$PG_PORT" || state="running (not accepting connections yet)"
  else
    state="stopped"; rc=3
  fi
  printf '%-9s %-8s pid=%-8s port=%-6s data=%s log=%s\n' "postgres" "$state" "${pid:--}" "$PG_PORT" "$PG_DATA" "$PG_LOG"
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    state="running"
    port_open "$KAFKA_PORT" || state="running (not accepting connections yet)"
  else
    state="stopped"; rc=3
  fi
  printf '%-9s %-8s pid=%-8s port=%-6s controller=%s data=%s log=%s\n' "kafka" "$state" "${pid:--}" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_DATA" "$KAFKA_SERVER_LOG"
  return $rc
}

cmd_reset() {
  cmd_down
  [[ -n "$STATE_DIR" && "$STATE_DIR" != "/" ]] || die "refusing to reset with STATE_DIR='$STATE_DIR'"
  rm -rf -- "$PG_DIR" "$KAFKA_DIR"
  log "reset: deleted $PG_DIR and $KAFKA_DIR (jar cache $KAFKA_CACHE kept)"
}

cmd_psql() {
  find_pg_bin
  export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER="$PG_SUPERUSER"
  export PGDATABASE="${PGDATABASE:-postgres}"
  exec "$PG_BIN/psql" "$@"
}

usage() {
  cat <<EOF
usage: $0 <command> [args]

  install      install what is missing (PostgreSQL, Java 17+, Maven) and resolve Kafka jars
  up           install, start PostgreSQL + Kafka, create the databases (idempotent)
  down         stop PostgreSQL and Kafka (idempotent)
  status       show state; exit 0 if both run, 3 otherwise
  reset        down, then delete the local data dirs (keeps the jar cache)
  psql [args]  psql as superuser '$PG_SUPERUSER' on 127.0.0.1:$PG_PORT (default db: postgres)

state dir: $STATE_DIR   cache dir: $CACHE_DIR
EOF
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install) check_settings; cmd_install ;;
    up)      check_settings; take_lock 9 "$STATE_DIR/.infra.lock" "$cmd"; cmd_up ;;
    down)    take_lock 9 "$STATE_DIR/.infra.lock" "$cmd"; cmd_down ;;
    status)  cmd_status ;;
    reset)   take_lock 9 "$STATE_DIR/.infra.lock" "$cmd"; cmd_reset ;;
    psql)    cmd_psql "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) printf 'infra.sh: unknown command: %s\n\n' "$cmd" >&2; usage >&2; exit 2 ;;
  esac
}

# `exit` keeps bash from reading past this line if the file is replaced while running.
main "$@"; exit
