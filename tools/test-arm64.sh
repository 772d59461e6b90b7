#!/usr/bin/env bash
# Runs the kernel, golden-model and inference tests as Arm64 code under QEMU user-mode emulation, so the AdvSimd/dot-product
# kernels (src/Kaiyuan.Runtime/Tensors/QuantizedDot.Neon.cs) are checked on an x86 machine. Not part of .ci/run: emulation
# makes it several minutes long.
# Needs (Debian): dpkg --add-architecture arm64 && apt-get update &&
#   apt-get install qemu-user-static libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 libssl3:arm64
# Usage: tools/test-arm64.sh [xunit class or namespace filters, e.g. -class Kaiyuan.Tests.Tensors.SimdDotTests]
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/arm64-tests   # inside the repository (ignored), so the tests find ../shared/fixtures as usual
dotnet publish tests/Kaiyuan.Tests -c Release -r linux-arm64 --self-contained -o "$out" -v quiet
filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
  filters=(-namespace Kaiyuan.Tests.Tensors -namespace Kaiyuan.Tests.Models -namespace Kaiyuan.Tests.Inference)
fi
# -cpu max: an Armv8.x CPU with the dot-product extension. Invariant globalization: the arm64 ICU is not installed.
DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_EnableWriteXorExecute=0 \
  qemu-aarch64-static -cpu max "$out/Kaiyuan.Tests" "${filters[@]}"
