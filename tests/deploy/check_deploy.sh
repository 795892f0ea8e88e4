#!/usr/bin/env bash
# Offline checks of deploy/: the kustomization renders, the Deployment has the properties we
# promise (gRPC probes, requests = limits, non-root, read-only root), and every server flag the
# manifests pass (PRIMSERVE_* variables, --flags) exists in `primserve-server --helpfull`.
# Usage: check_deploy.sh <primserve-server> <repo root>
set -euo pipefail
SERVER=$1
ROOT=$2
if ! command -v kubectl >/dev/null; then
  echo "check_deploy: kubectl not installed; skipping the kustomize render"
  exit 77
fi
rendered=$(kubectl kustomize "$ROOT/deploy/k8s")
# The overlay with TLS and tokens on (its flags are checked below too).
secured=$(kubectl kustomize "$ROOT/deploy/k8s-secured")
help=$("$SERVER" --helpfull 2>&1 || true)
fail=0
check() { if ! grep -qE -- "$2" <<<"$rendered"; then echo "check_deploy: FAIL: $1"; fail=1; else echo "check_deploy: ok: $1"; fi; }
check "gRPC readiness/liveness probes" "grpc:"
check "runAsNonRoot" "runAsNonRoot: true"
check "read-only root filesystem" "readOnlyRootFilesystem: true"
check "headless Service" "clusterIP: None"
check "PodDisruptionBudget" "kind: PodDisruptionBudget"
check "HorizontalPodAutoscaler" "kind: HorizontalPodAutoscaler"
check "PersistentVolumeClaim" "kind: PersistentVolumeClaim"
check "TLS Secret volume" "secretName: primserve-tls"
if grep -A2 "mountPath: /etc/primserve/tls" <<<"$rendered" | grep -q "readOnly: true"; then
  echo "check_deploy: ok: TLS Secret mounted read-only"; else echo "check_deploy: FAIL: TLS Secret not read-only"; fail=1; fi
if grep -qE "PRIMSERVE_TLS_CERT: /etc/primserve/tls/" <<<"$secured"; then echo "check_deploy: ok: secured overlay sets TLS"; else
  echo "check_deploy: FAIL: deploy/k8s-secured does not set PRIMSERVE_TLS_CERT"; fail=1; fi
# The flags' ConfigMap is generated with a content hash in its name, and the Deployment uses that
# name: a change to a flag rolls the pods out.
for manifests in "$rendered" "$secured"; do
  generated=$(grep -oE "name: primserve-flags-[a-z0-9]{10}$" <<<"$manifests" | sort -u)
  if [[ $(wc -l <<<"$generated") == 1 && -n "$generated" && $(grep -cF "$generated" <<<"$manifests") == 2 ]]; then
    echo "check_deploy: ok: flags ConfigMap hash-named and referenced (${generated#name: })"
  else
    echo "check_deploy: FAIL: flags ConfigMap not hash-named or not referenced by the Deployment"; fail=1
  fi
done
# SIGKILL comes terminationGracePeriodSeconds after the preStop hook starts: the hook's pause,
# the drain and the server's flush window (2 s) must fit, with a second to spare.
for manifests in "$rendered" "$secured"; do
  grace=$(sed -n 's/^ *terminationGracePeriodSeconds: *\([0-9]*\)$/\1/p' <<<"$manifests")
  pause=$(grep -A1 -- "- /bin/sleep" <<<"$manifests" | tail -1 | grep -oE '[0-9]+' || echo 0)
  drain=$(sed -n 's/^ *PRIMSERVE_DRAIN_SECONDS: "*\([0-9.]*\)"*$/\1/p' <<<"$manifests")
  if [[ -n "$grace" && -n "$drain" && "$pause" -gt 0 ]] &&
     awk -v g="$grace" -v p="$pause" -v d="$drain" 'BEGIN { exit !(p + d + 2 + 1 <= g) }'; then
    echo "check_deploy: ok: preStop ${pause} s + drain ${drain} s + flush 2 s fit terminationGracePeriodSeconds ${grace}"
  else
    echo "check_deploy: FAIL: preStop '${pause}' s + drain '${drain}' s + flush 2 s vs terminationGracePeriodSeconds '${grace}'"
    fail=1
  fi
done
# requests = limits for the container.
requests=$(grep -A2 "requests:" <<<"$rendered" | grep -E "cpu|memory" | sort | tr -d ' ' | head -2)
limits=$(grep -A2 "limits:" <<<"$rendered" | grep -E "cpu|memory" | sort | tr -d ' ' | head -2)
if [[ -n "$requests" && "$requests" == "$limits" ]]; then echo "check_deploy: ok: requests = limits"; else
  echo "check_deploy: FAIL: requests ($requests) != limits ($limits)"; fail=1; fi
# Every PRIMSERVE_<FLAG> in the manifests and compose file is a real flag.
for var in $( (echo "$rendered"; echo "$secured"; cat "$ROOT/deploy/compose.yaml") | grep -oE "PRIMSERVE_[A-Z_]+" | sort -u); do
  flag=$(tr 'A-Z' 'a-z' <<<"${var#PRIMSERVE_}")
  if grep -qE -- "--$flag \(" <<<"$help"; then echo "check_deploy: ok: $var -> --$flag"; else
    echo "check_deploy: FAIL: $var: no --$flag in primserve-server --helpfull"; fail=1; fi
done
for flag in $(grep -oE -- "--[a-z_]+=" <<<"$rendered" | tr -d '=' | sort -u); do
  if grep -qE -- "$flag \(" <<<"$help"; then echo "check_deploy: ok: $flag"; else
    echo "check_deploy: FAIL: $flag not a server flag"; fail=1; fi
done
exit $fail
