#!/usr/bin/env python3
"""Copies the files of the Docker build context (git files minus .dockerignore) into a directory.

Usage: docker_context.py REPO_ROOT CONTEXT_DIR FILE_LIST
"""

import fnmatch
import os
import shutil
import sys

root, ctx = sys.argv[1], sys.argv[2]
patterns = [
    line.strip()
    for line in open(os.path.join(root, ".dockerignore"))
    if line.strip() and not line.startswith("#")
]


def ignored(path):
    parts = path.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        for i in range(1, len(parts) + 1):
            head = "/".join(parts[:i])
            if fnmatch.fnmatch(head, pat) or (
                pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])
            ):
                return True
    return False


n = 0
for path in open(sys.argv[3]).read().split("\n"):
    if path and os.path.isfile(os.path.join(root, path)) and not ignored(path):
        os.makedirs(os.path.dirname(os.path.join(ctx, path)), exist_ok=True)
        shutil.copy2(os.path.join(root, path), os.path.join(ctx, path))
        n += 1
print(f"{n} files in the build context")
