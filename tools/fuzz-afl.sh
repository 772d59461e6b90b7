#!/usr/bin/env bash
# Coverage-guided fuzzing of one input surface, or all of them: tools/fuzz-afl.sh TARGET|all [SECONDS] [--seed N].
# Targets as tools/fuzz.sh's (gguf, tokenizer, jinja, parser, grammar, http, imatrix), each run by afl-fuzz (AFL++) for SECONDS
# (default 60) through SharpFuzz: a copy of the fuzz tool's build, under artifacts/afl/TARGET/, in which the assemblies
# (or namespaces) the target's surface runs are instrumented for AFL's edge coverage. Seeds: the checked-in corpus (tools/Kaiyuan.Fuzz/corpus/TARGET/, seeds/ included)
# and small seeds made from the fixtures at run time; the target's words as AFL's dictionary. Each input passes the same
# check as in tools/fuzz.sh (a clean error or a result, within the target's time bound and allocation budget).
# A crash or hang AFL saves is replayed uninstrumented through that check (the exception shown in full), copied to
# artifacts/fuzz/afl-TARGET-KIND-N.bin, and makes the exit status 1; an input worth keeping becomes a corpus file and a
# regression test. Needs afl-fuzz (Debian: apt-get install afl++) and the sharpfuzz tool (.config/dotnet-tools.json,
# restored here); the exit status is 2 when either is missing or afl-fuzz fails.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(gguf tokenizer jinja parser grammar http imatrix)
which=${1:-}
seconds=60
seed=()
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=(-s "$2"); shift 2 ;;
    *) seconds=$1; shift ;;
  esac
done
if [[ ! " all ${all[*]} " =~ " $which " ]] || [ -z "$which" ]; then
  echo "usage: tools/fuzz-afl.sh TARGET|all [SECONDS] [--seed N]; targets: ${all[*]}" >&2
  exit 2
fi
targets=("$which")
[ "$which" = all ] && targets=("${all[@]}")
if [ ! -d ../shared/fixtures ]; then
  echo "fuzz-afl: ../shared/fixtures is absent; the targets' seeds come from the fixtures, so nothing is fuzzed"
  exit 0
fi
if ! command -v afl-fuzz >/dev/null; then
  echo "fuzz-afl: afl-fuzz is not installed (Debian: apt-get install afl++)" >&2
  exit 2
fi
dotnet tool restore >/dev/null || { echo "fuzz-afl: the sharpfuzz tool could not be restored (dotnet tool restore)" >&2; exit 2; }

dotnet build tools/Kaiyuan.Fuzz -c Release -v quiet -nologo >/dev/null
build=tools/Kaiyuan.Fuzz/bin/Release/net10.0
work=artifacts/afl

# AFL's checks for a tuned machine and for native instrumentation in the binary (dotnet has none; the assemblies do).
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
status=0
summary=()
for target in "${targets[@]}"; do
  dir=$work/$target
  rm -rf "$dir"
  timeout_ms=$(dotnet "$build/Kaiyuan.Fuzz.dll" afl-prepare "$target" "$dir")
  dictionary=()
  [ -s "$dir/dictionary" ] && dictionary=(-x "$dir/dictionary")
  # A copy of the build with the target's assemblies (or namespaces of them) instrumented; inside the repository, so
  # that the harness finds ../shared/fixtures from it as the build does.
  cp -a "$build" "$dir/bin"
  while read -r assembly prefixes; do
    # shellcheck disable=SC2086 # the prefixes are separate arguments
    dotnet sharpfuzz "$dir/bin/$assembly.dll" $prefixes >/dev/null
  done <"$dir/instrument"
  echo "fuzz-afl: $target for $seconds s ($(ls "$dir/seeds" | wc -l) seeds, $((timeout_ms / 1000)) s per input at most)"
  # -V bounds the fuzzing; the outer timeout the start-up too (SIGINT: afl-fuzz writes its stats and stops).
  if ! timeout -s INT $((seconds + 300)) afl-fuzz -i "$dir/seeds" -o "$dir/findings" "${dictionary[@]}" "${seed[@]}" \
      -t "$timeout_ms" -m none -V "$seconds" -- dotnet "$dir/bin/Kaiyuan.Fuzz.dll" afl "$target" >"$dir/afl.log" 2>&1; then
    echo "fuzz-afl: afl-fuzz failed on $target (log: $dir/afl.log):"
    grep -v '^\s*$' "$dir/afl.log" | tail -n 15
    status=2
    continue
  fi
  stats=$dir/findings/default/fuzzer_stats
  field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  line="$target: $(field run_time) s, $(field execs_done) execs ($(field execs_per_sec)/s), $(field edges_found) edges,"
  line+=" $(field corpus_count) inputs in the queue, $(field saved_crashes) crashes, $(field saved_hangs) hangs, stability $(field stability)"
  echo "  $line"
  summary+=("$line")
  found=()
  for kind in crash hang; do
    n=0
    for f in "$dir/findings/default/${kind}es"/id:*; do
      [ -e "$f" ] || continue
      mkdir -p artifacts/fuzz
      copy=artifacts/fuzz/afl-$target-$kind-$((n++)).bin
      cp "$f" "$copy"
      found+=("$copy")
    done
  done
  if [ ${#found[@]} -gt 0 ]; then
    [ "$status" -eq 2 ] || status=1
    echo "  findings (AFL's file names in $dir/findings/default): ${found[*]}"
    # The uninstrumented build, through the in-process check: the exception each one throws, or that it hangs.
    if dotnet "$build/Kaiyuan.Fuzz.dll" replay "$target" "${found[@]}"; then
      echo "  (none of them fails outside AFL: a hang only as slow as the instrumented code, or a race; run them again)"
    fi
  fi
done
if [ ${#targets[@]} -gt 1 ]; then
  echo "fuzz-afl summary:"
  printf '  %s\n' "${summary[@]}"
fi
exit $status
