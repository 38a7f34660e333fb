"""Metric tables printed in upstream's markdown format and saved beside the results."""


def format_table(name_values, arch_name):
    """Three markdown lines as upstream prints them.

    ``| Arch | AP | ... |``, ``|---|---...|`` (one ``|---`` per column), and the row with the
    arch name (cut to 8 characters + ``...`` when longer than 15) and ``{:.3f}`` values.
    """
    names = list(name_values.keys())
    values = list(name_values.values())
    if len(arch_name) > 15:
        arch_name = arch_name[:8] + "..."
    header = "| Arch " + " ".join(f"| {n}" for n in names) + " |"
    separator = "|---" * (len(names) + 1) + "|"
    row = "| " + arch_name + " " + " ".join(f"| {v:.3f}" for v in values) + " |"
    return "\n".join([header, separator, row])


def write_table(path, name_values, arch_name):
    """Write the table to `path` (a .md file) and return its text."""
    text = format_table(name_values, arch_name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return text
