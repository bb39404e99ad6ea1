#!/usr/bin/env bash
# Two "nodes" on one machine: two network namespaces joined by a veth pair, each running
#   torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 10.213.0.1:PORT
# so that rendezvous and gloo traffic cross a real (virtual) link, as between two machines.
#
#   sudo bash scripts/two_nodes.sh -m perceiver_io.cli train mlm train.max_steps=20
#
# Everything after the script name is what torchrun runs on each node (the same on both).
# Needs root (ip netns) and iproute2; the namespaces and the link are removed on exit.
# Environment: PYTHON (default python3), PORT (default 29400), NPROC (processes per node, default 1).
set -euo pipefail
PYTHON=${PYTHON:-python3}
PORT=${PORT:-29400}
NPROC=${NPROC:-1}
tag=$$
a=pio-a-$tag b=pio-b-$tag va=pva$tag vb=pvb$tag
net=10.213.$((tag % 250)).
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
ip -n "$a" addr add "${net}1/24" dev "$va"
ip -n "$b" addr add "${net}2/24" dev "$vb"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" up
ip -n "$b" link set "$vb" up

node() {  # node NAMESPACE INTERFACE ADDRESS IS_HOST (the node that serves the rendezvous store)
  ip netns exec "$1" env GLOO_SOCKET_IFNAME="$2" "$PYTHON" -m torch.distributed.run \
    --nnodes 2 --nproc-per-node "$NPROC" --rdzv-backend c10d --rdzv-endpoint "${net}1:$PORT" \
    --rdzv-id "pio-$tag" --rdzv-conf "is_host=$4,join_timeout=60" --local-addr "$3" "${@:5}"
}
node "$a" "$va" "${net}1" 1 "$@" &
first=$!
node "$b" "$vb" "${net}2" 0 "$@" &
second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$?
exit "$status"
