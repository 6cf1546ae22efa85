"""Print the MLflow UI link `make ui` announces: the experiment's runs in the saved view.

    python pipelines/ui_link.py <tracking-uri> <ui-base-url> [experiment]
"""

from __future__ import annotations

import sys

from xnorlab.tracking import ui_link

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(f"usage: {sys.argv[0]} <tracking-uri> <ui-base-url> [experiment]")
    print(ui_link(*sys.argv[1:]))
