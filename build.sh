#!/usr/bin/env bash
# The project's two commands:
#   ./build.sh demo [--model PATH|REPO_ID] [--sae PATH|REPO_ID]   feature-analysis demo (offline on the bundled tiny model)
#   ./build.sh test                                                 bootstrap, restore, build and run every test
set -euo pipefail
cd "$(dirname "$0")"
bash eng/bootstrap.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
cmd="${1:-test}"; shift || true
case "$cmd" in
  test)
    dotnet restore LlavaInterp.sln
    dotnet build LlavaInterp.sln -c Release --no-restore
    # Every layer must stay packable on its own (dotnet add package LlavaInterp brings them all).
    dotnet pack LlavaInterp.sln -c Release --no-build -o artifacts/packages -v quiet
    dotnet test tests/LlavaInterp.Tests/LlavaInterp.Tests.csproj -c Release --no-build \
      --logger "console;verbosity=normal" "$@"
    ;;
  demo)
    dotnet build samples/LlavaInterp.Cli/LlavaInterp.Cli.csproj -c Release -v quiet -nologo
    dotnet samples/LlavaInterp.Cli/bin/Release/net10.0/llava-interp.dll demo "$@"
    ;;
  *)
    echo "usage: ./build.sh test | demo [options]" >&2; exit 2 ;;
esac
