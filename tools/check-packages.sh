#!/usr/bin/env bash
# Builds and runs an application that references the packed NuGet packages, not the projects: the packages restore with
# their dependencies, and their public API alone is enough to chat in process and to run the decode loop.
# Usage: tools/check-packages.sh PACKAGE_DIR MODEL.gguf
set -euo pipefail
packages=$(realpath "$1"); model=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# Outside the repository, so none of its Directory.Build.props apply.
cp "$here/package-check/Program.cs" "$work/"
cp "$here/package-check/Consumer.csproj.template" "$work/Consumer.csproj"
# The global package cache keeps a package by id and version: drop earlier builds of ours so these are the ones restored.
rm -rf "${NUGET_PACKAGES:-$HOME/.nuget/packages}"/kaiyuan.*
dotnet run --project "$work/Consumer.csproj" -c Release -p:PackageDir="$packages" -- "$model"
