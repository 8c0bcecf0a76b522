#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors for one prompt, to find where Symphony's
arithmetic first parts from the reference.

llama.cpp names every node of its graph (`attn_norm-3`, `Qcur-3`, `kqv_out-3`, `ffn_out-3`,
`l_out-3`, ...); its eval callback sees each one after it is computed. This script records
the f32 ones for the layers asked for into a pickle of (name, shape, values) in graph
order. Feed the same tokens to Symphony, write its values at the same points, and compare
layer by layer: the first tensor that differs names the operation to look at.

    .venv-ref/bin/python scripts/reference/dump_tensors.py --model M.gguf \\
        --tokens 2,818,5279 [--then 529,7001] --layers 0,1,2 --out dump.pkl

`--tokens` are decoded as one batch; each of `--then` is decoded alone afterwards, and only
the last decode is recorded (batch shape changes which kernels llama.cpp uses).
"""

import argparse
import ctypes
import pickle

import numpy as np
from llama_cpp import Llama
from llama_cpp import llama_cpp as C


class GgmlTensor(ctypes.Structure):
    """The leading fields of ggml's `struct ggml_tensor` (ggml.h), up to its name."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated ids, decoded as one batch")
    ap.add_argument("--then", default="", help="comma-separated ids, decoded one at a time")
    ap.add_argument("--layers", required=True, help="comma-separated layer indices")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    layers = {int(x) for x in args.layers.split(",")}
    recording = [False]
    captured = []

    def wanted(name):
        base, _, layer = name.rpartition("-")
        if layer.isdigit():
            return int(layer) in layers
        return name in ("result_norm", "result_output")

    def callback(ptr, ask, _user_data):
        t = ctypes.cast(ptr, ctypes.POINTER(GgmlTensor)).contents
        name = t.name.decode(errors="replace")
        keep = recording[0] and t.type == 0 and wanted(name)  # type 0: f32
        if ask:
            return keep
        ne, nb = list(t.ne), list(t.nb)
        contiguous = nb[0] == 4 and nb[1] == 4 * ne[0] and nb[2] == nb[1] * ne[1] and nb[3] == nb[2] * ne[2]
        if keep and contiguous:
            n = ne[0] * ne[1] * ne[2] * ne[3]
            values = np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctypes.c_float)), shape=(n,))
            captured.append((name, ne, values.copy()))
        return True

    callback_fn = C.ggml_backend_sched_eval_callback(callback)
    # Same settings as make_golden.py: f32 KV cache, no flash attention.
    llm = Llama(model_path=args.model, n_ctx=1024, n_batch=512, n_threads=2, verbose=False,
                type_k=0, type_v=0, flash_attn=False, logits_all=True)
    params = llm.context_params
    params.cb_eval = callback_fn
    params.cb_eval_user_data = None
    ctx = C.llama_init_from_model(llm.model, params)

    batches = [[int(x) for x in args.tokens.split(",")]]
    batches += [[int(x)] for x in args.then.split(",") if x]
    for i, batch in enumerate(batches):
        recording[0] = i == len(batches) - 1
        ids = (ctypes.c_int32 * len(batch))(*batch)  # kept alive across the call
        if C.llama_decode(ctx, C.llama_batch_get_one(ids, len(batch))) != 0:
            raise SystemExit(f"llama_decode failed on batch {i}")
    C.llama_free(ctx)

    with open(args.out, "wb") as f:
        pickle.dump({"batches": batches, "tensors": captured}, f)
    print(f"{len(captured)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
