#!/usr/bin/env bash
# The seed guide's manual steps as a plain script, written carefully: the baseline shipyard is
# measured against. Usage: seed_script.sh deploy|stop  with APP_DIR, WORK, PORT, SECRET set.
set -euo pipefail
: "${APP_DIR:?}" "${WORK:?}" "${PORT:?}" "${SECRET:=bench-secret}"
python=/usr/bin/python3
supervisord="$WORK/venv/bin/supervisord -c $WORK/supervisord.conf"
supervisorctl="$WORK/venv/bin/supervisorctl -c $WORK/supervisord.conf"

stop() {
    [[ -S $WORK/supervisor.sock ]] && $supervisorctl shutdown >/dev/null 2>&1 || true
    [[ -f $WORK/nginx.pid ]] && nginx -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log" -s quit 2>/dev/null || true
}

deploy() {
    mkdir -p "$WORK/logs" "$WORK/tmp"
    # 3.1 virtualenv and dependencies
    [[ -x $WORK/venv/bin/python ]] || "$python" -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q --disable-pip-version-check "$APP_DIR" gunicorn supervisor
    site=$("$WORK/venv/bin/python" -c 'import flaskr, os; print(os.path.dirname(flaskr.__file__))')
    # 3.4 supervisor program (a full supervisord config: the seed's -c <program file> cannot work)
    cat > "$WORK/supervisord.conf" <<CONF
[unix_http_server]
file = $WORK/supervisor.sock
[supervisord]
logfile = $WORK/logs/supervisord.log
pidfile = $WORK/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl = unix://$WORK/supervisor.sock
[program:flaskr]
command = $WORK/venv/bin/gunicorn --workers 2 --bind unix:$WORK/app.sock 'flaskr:create_app()'
directory = $WORK
environment = FLASKR_SECRET_KEY="$SECRET",FLASK_APP="flaskr"
autostart = true
autorestart = true
redirect_stderr = true
stdout_logfile = $WORK/logs/flaskr.log
stopsignal = INT
CONF
    # 3.3 nginx: static files by nginx, the app behind a unix socket (proxy_pass: gunicorn speaks HTTP)
    run_as=""
    [[ $(id -u) -eq 0 ]] && run_as="user root;"  # workers must reach the socket in WORK
    cat > "$WORK/nginx.conf" <<CONF
$run_as
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;
    access_log $WORK/logs/access.log;
    server {
        listen 127.0.0.1:$PORT;
        location /static/ { alias $site/static/; }
        location / { proxy_pass http://unix:$WORK/app.sock; proxy_set_header Host \$host; }
    }
}
CONF
    FLASKR_SECRET_KEY=$SECRET "$WORK/venv/bin/flask" --app flaskr init-db >/dev/null
    # 3.5 start, or restart after a change
    if [[ -S $WORK/supervisor.sock ]] && $supervisorctl status >/dev/null 2>&1; then
        $supervisorctl restart flaskr >/dev/null
    else
        $supervisord
    fi
    nginx -t -q -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log"
    if [[ -f $WORK/nginx.pid ]] && kill -0 "$(cat "$WORK/nginx.pid")" 2>/dev/null; then
        nginx -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log" -s reload
    else
        nginx -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log"
    fi
}

"${1:-deploy}"
