#!/usr/bin/env bash
# Fuzzes one input surface, or all of them, for a while: tools/fuzz.sh TARGET|all [SECONDS] [--seed N].
# Targets: gguf, tokenizer, jinja, parser, grammar, http, imatrix. Findings go to artifacts/fuzz (the input and what went wrong);
# an input worth keeping becomes a file in tools/Kaiyuan.Fuzz/corpus/TARGET/, replayed on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build tools/Kaiyuan.Fuzz -c Release -v quiet -nologo >/dev/null
exec dotnet tools/Kaiyuan.Fuzz/bin/Release/net10.0/Kaiyuan.Fuzz.dll "$@"
