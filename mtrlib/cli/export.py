"""`python -m mtrlib export RUN --onnx DIR`: the run's model as ONNX files for serving without torch.

The verb `export` is declared in `mtrlib.cli.runs` (its `--projector` form came first); this
module holds the ONNX half. The last line of stdout is one JSON object: the folder, the files
written, the tasks and the inputs.
"""
from __future__ import annotations

import json


def cmd_export_onnx(args) -> int:
    from mtrlib.serve.onnx_export import export_onnx  # deferred: torch and onnx, this verb only

    sig = export_onnx(args.run, args.onnx, store=args.store, fusion=getattr(args, "fusion", None))
    files = [sig["ranking"]["file"], *(t["file"] for t in sig["towers"]), "signature.json"]
    if sig["history"]["file"]:
        files.append(sig["history"]["file"])
    print(json.dumps({"folder": str(args.onnx), "files": files, "tasks": [t["task"] for t in sig["tasks"]],
                      "inputs": [i["name"] for i in sig["ranking"]["inputs"]], "fusion": sig["fusion"]}))
    return 0
