#!/usr/bin/env python3
"""The longest C++ function definitions in services/, libs/ and tools/ (issue 20's yardstick: the
ten longest under 60 lines). Every function body counts, free or member, defined at namespace scope
or inside a class body in a .cc or .h; lambdas count as part of the function they are written in.
Lines are counted from the first line of the signature to the closing brace.

A brace-matching scan with comments, strings and character literals blanked out: a '{' at
namespace or class scope opens a function body when what precedes it (since the last ';', '{' or
'}') has a parameter list and is not a namespace, class, enum or initialiser.

  tools/dev/longest_functions.py [N]     # the N longest (default 15), run from the repository root
"""
import glob
import re
import sys

SCOPE_HEAD = re.compile(r'\b(namespace|class|struct|union|enum)\b[^()]*$|^\s*extern\s+"C"')
# A parameter list, then qualifiers, a trailing return type or a constructor's initialiser list.
FUNCTION_HEAD = re.compile(r'\)\s*(const|override|final|noexcept|mutable|volatile|&|&&|\s)*'
                           r'(->[^{;]*)?(:[^;{]*)?$', re.S)


def blank(text):
    """The text with comments, string and character literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i) and (
                i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c in '"\'':
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator: 1'000'000
                out.append(' ')
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            out.append(' ' * (min(j + 1, n) - i))
            i = j + 1
        elif c == '#' and (i == 0 or text[i - 1] == '\n'):  # preprocessor line, with continuations
            k = i
            while True:
                k = text.find('\n', k)
                if k < 0:
                    k = n
                    break
                if text[k - 1] != '\\':
                    break
                k += 1
            out.append(re.sub(r'[^\n]', ' ', text[i:k]))
            i = k
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def functions(path):
    """(lines, first line, signature) of each function body in the file."""
    text = blank(open(path, encoding='utf-8').read())
    line_of = []
    line = 1
    for c in text:
        line_of.append(line)
        if c == '\n':
            line += 1
    stack = []  # open braces: (kind, where its head starts); kind is scope, function or other
    head_start = 0
    for i, c in enumerate(text):
        if c == '{':
            head = text[head_start:i]
            kind = 'other'
            at_scope = not stack or stack[-1][0] == 'scope'
            if at_scope and SCOPE_HEAD.search(head.strip()):
                kind = 'scope'
            elif at_scope and '(' in head and FUNCTION_HEAD.search(head.strip()) and \
                    '=' not in head.split('(')[0]:
                kind = 'function'
            first = head_start + len(head) - len(head.lstrip())
            stack.append((kind, first))
            head_start = i + 1
        elif c == '}':
            if stack:
                kind, first = stack.pop()
                if kind == 'function':
                    signature = re.sub(r'\s+', ' ', text[first:text.find('{', first)]).strip()
                    signature = re.sub(r'^((public|private|protected)\s*:\s*)+', '', signature)
                    yield line_of[i] - line_of[first] + 1, line_of[first], signature[:110]
            head_start = i + 1
        elif c == ';':
            head_start = i + 1


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    found = []
    for root in ('services', 'libs', 'tools'):
        for path in sorted(glob.glob(f'{root}/**/*.cc', recursive=True) +
                           glob.glob(f'{root}/**/*.h', recursive=True)):
            if '/node_modules/' in path:
                continue
            for lines, start, signature in functions(path):
                found.append((lines, path, start, signature))
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    for lines, path, start, signature in found[:count]:
        print(lines, f'{path}:{start}', signature)


if __name__ == '__main__':
    main()
