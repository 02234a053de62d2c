"""``python -m hostside.arch.ops``: the op table of docs/ops.md, as Markdown, from the registry."""

from hostside.arch.ops import REGISTRY


def table() -> str:
    rows = ["| op | family | inputs | attributes | shape rule | cost rule |", "|---|---|---|---|---|---|"]
    for name, op in REGISTRY.items():
        aliases = f" (alias {', '.join(f'`{a}`' for a in op.aliases)})" if op.aliases else ""
        inputs = str(op.min_inputs) if op.min_inputs == op.max_inputs else f">= {op.min_inputs}"
        attrs = "; ".join(f"`{key}`: {a.describe()}" for key, a in op.schema.items()) or "none"
        rows.append(f"| `{name}`{aliases} | {op.family} | {inputs} | {attrs} | {op.shape_rule} | {op.cost_rule} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
