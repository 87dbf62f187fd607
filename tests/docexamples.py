"""Code examples taken from nsp's docstrings, so tests run them exactly as documented."""
import textwrap


def docstring_example(docstring: str) -> str:
    """The first code block (the indented lines after ``::``) of a docstring, dedented."""
    block = docstring.split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))
