#!/bin/bash
# Entry point of the praetor-node image (runs under tini).
#
#   praetor-node node [config]   praetor + PostgreSQL: prepare the data volume and the socket directory, then run
#                                praetor as the postgres user with /etc/praetor/praetor.yml (or the given file)
#   praetor-node zookeeper       a standalone ZooKeeper on port 2181 (data in /var/lib/zookeeper-standalone)
#   praetor-node zkcli CMD ARGS  one ZooKeeper CLI command (zkCli's `get`, `set`, `create`, ...) on 127.0.0.1:2181
#   praetor-node <command...>    run the command as is (etcd, consul-api-server, haproxy, bash)
set -euo pipefail

zk_classpath() {
  local cp=/usr/share/java/zookeeper.jar jar
  for jar in /usr/share/java/slf4j-simple.jar /usr/share/java/netty-codec.jar /usr/share/java/netty-resolver.jar \
    /usr/share/java/commons-cli.jar; do
    [ -f "$jar" ] && cp="$cp:$jar"
  done
  echo "$cp"
}

case "${1:-node}" in
  node)
    cfg="${2:-/etc/praetor/praetor.yml}"
    mkdir -p /var/lib/postgresql/data /run/postgresql
    chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /run/postgresql
    chmod 0700 /var/lib/postgresql/data
    chmod 2775 /run/postgresql
    cd /var/lib/postgresql
    export HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres
    exec setpriv --reuid=postgres --regid=postgres --init-groups praetor "$cfg"
    ;;
  zookeeper)
    # Not /var/lib/zookeeper: Debian's package leaves a placeholder `myid` there, which ZooKeeper rejects.
    mkdir -p /var/lib/zookeeper-standalone
    cat >/tmp/zoo.cfg <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper-standalone
clientPort=2181
maxSessionTimeout=60000
minSessionTimeout=1000
4lw.commands.whitelist=srvr,ruok,stat,mntr
admin.enableServer=false
EOF
    exec java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.jmx.log4j.disable=true \
      -cp "$(zk_classpath)" org.apache.zookeeper.server.ZooKeeperServerMain /tmp/zoo.cfg
    ;;
  zkcli)
    shift
    exec java -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      -cp "$(zk_classpath)" org.apache.zookeeper.ZooKeeperMain -server 127.0.0.1:2181 "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
