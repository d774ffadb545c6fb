#!/usr/bin/env python3
"""The longest top-level C++ function definitions in services/, libs/ and tools/ (issue 20's
yardstick: the ten longest under 60 lines). A brace-matching scan of clang-formatted sources: a
definition starts at column 0 and ends at the next '}' in column 0. Prints lines, place, signature.

  tools/dev/longest_functions.py [N]     # default 15
"""
import glob
import re
import sys

res=[]
for f in glob.glob('services/**/*.cc',recursive=True)+glob.glob('libs/**/*.cc',recursive=True)+glob.glob('tools/**/*.cc',recursive=True):
    lines=open(f).read().split('\n')
    i=0
    while i<len(lines):
        l=lines[i]
        # function start: a line at col 0 (not namespace/struct/class/comment) whose signature ends with '{' at col 0 region
        if l and not l[0].isspace() and not l.startswith(('namespace','}','//','#','class','struct','enum','using','template','static_assert','ABSL_FLAG','constexpr','const ','inline constexpr')) or (l.startswith('const ') and '(' in l):
            # find the line where '{' ends the signature
            j=i
            while j<len(lines) and not lines[j].rstrip().endswith('{') and not lines[j].rstrip().endswith(';') and j-i<8: j+=1
            if j<len(lines) and lines[j].rstrip().endswith('{') and '(' in ''.join(lines[i:j+1]) and '=' not in lines[i].split('(')[0]:
                # find closing '}' at col 0
                k=j+1
                while k<len(lines) and not lines[k].startswith('}'): k+=1
                name=re.sub(r'\s+',' ',' '.join(lines[i:j+1]))[:110]
                res.append((k-i+1,f,i+1,name))
                i=k+1; continue
        i+=1
res.sort(reverse=True)
for r in res[:int(sys.argv[1]) if len(sys.argv)>1 else 15]: print(r[0], f'{r[1]}:{r[2]}', r[3])
