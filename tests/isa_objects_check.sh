#!/usr/bin/env bash
# The per-instruction-set objects of the fused GELU/dropout kernels (model/gelu_dropout_kernels.cpp,
# built with AVX2 or AVX-512 flags) must not hand AVX code to the rest of the program:
#  - every symbol they define is in their own namespace (vit::AVX2, vit::AVX512, or ATen's
#    at::vec::AVX2/AVX512): an inline function of a shared header emitted here as a weak symbol
#    could be the copy the linker keeps for every caller, and crash a CPU without that set;
#  - their static initializers (run at program start on every CPU) contain no AVX instructions.
# One symbol outside those namespaces is allowed: DW.ref.__gxx_personality_v0, a weak data word
# (nm type V) holding the address of the C++ exception personality routine, which gcc emits in any
# object with landing pads (the ASan build adds some); it is data, not code, and every object's
# copy holds the same address.
#
#   tests/isa_objects_check.sh OBJECT...   (CTest passes the objects of vit_eltwise_AVX2/AVX512)
set -euo pipefail
status=0
for o in "$@"; do
  case "$o" in
    *AVX512*) ns=AVX512 ;;
    *AVX2*) ns=AVX2 ;;
    *) echo "not an AVX2/AVX512 object: $o" >&2; exit 2 ;;
  esac
  defined=$(nm -C --defined-only "$o" |
    awk '$2 ~ /^[TWVBDR]$/ && !($2 == "V" && $3 == "DW.ref.__gxx_personality_v0") { $1 = ""; $2 = ""; print }')
  stray=$(grep -v -e "vit::$ns::" -e "at::vec::$ns::" <<<"$defined" || true)
  if [ -n "$stray" ]; then
    echo "FAIL $o defines symbols outside vit::$ns / at::vec::$ns:"; echo "$stray"; status=1
  fi
  init=$(objdump -d --no-show-raw-insn "$o" | awk '/<_GLOBAL__sub_I/,/^$/')
  if grep -qE '%[xyz]mm|\bv[a-z]+' <<<"$init"; then
    echo "FAIL $o: a static initializer runs vector instructions:"; echo "$init"; status=1
  fi
  echo "$o: $(wc -l <<<"$defined") symbols, all in vit::$ns; static initializers free of AVX code"
done
exit $status
