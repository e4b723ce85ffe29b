"""Shorter ONNX files: tf2onnx and the quantizer name every tensor after its TensorFlow op path.

On a 32-unit step model those names are a third of the file. Renaming internal tensors and nodes (never the
graph's inputs and outputs, which the manifest names) changes no computation. Graphs with subgraphs (Loop, If)
are left alone, since their bodies may refer to outer names.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute
    )


def compact_names(path: Path) -> None:
    model = onnx.load(str(path))
    graph = model.graph
    if _has_subgraphs(graph):
        return
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
        tensor.doc_string = ""
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.doc_string = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    model.doc_string = ""
    graph.doc_string = ""
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
