#!/usr/bin/env python3
"""Checks every Catch2 TEST_CASE name in tests/ for two traps that cost a whole CI run.

- A ";" splits the name in two where CMake's catch_discover_tests lists it: two tests that match
  nothing run instead of one.
- Catch2 v2's console reporter indents a failing test's name, past its first line, to just after
  the first ": ". Too far right and the lines it wraps into are a few columns wide, or none: it
  then prints "-" forever (79 GB in one run) instead of the failure.
"""
import pathlib
import re
import sys

CONSOLE_WIDTH = 79  # Catch2 v2's default console width, less one
MIN_WRAPPED_WIDTH = 20  # columns left for the wrapped lines of a long name

LITERALS = r'(?:"(?:[^"\\]|\\.)*"\s*)+'
TEST_CASE = re.compile(r'\bTEST_CASE\s*\(\s*(' + LITERALS + ')')
ONE_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def problems(name):
    found = []
    if ';' in name:
        found.append('contains ";" (CMake splits the test in two)')
    colon = name.find(': ')
    if len(name) > CONSOLE_WIDTH and colon >= 0 and CONSOLE_WIDTH - (colon + 2) < MIN_WRAPPED_WIDTH:
        found.append(f'first ": " at column {colon + 1}: Catch2 would wrap the rest of a failing '
                     f'test\'s name into {CONSOLE_WIDTH - colon - 2} columns (move or drop it)')
    return found


def main(root):
    bad = 0
    for path in sorted(pathlib.Path(root, 'tests').rglob('*.cc')):
        text = path.read_text(encoding='utf-8')
        for m in TEST_CASE.finditer(text):
            name = ''.join(ONE_LITERAL.findall(m.group(1)))
            line = text.count('\n', 0, m.start()) + 1
            for p in problems(name):
                print(f'{path.relative_to(root)}:{line}: "{name}": {p}')
                bad += 1
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
