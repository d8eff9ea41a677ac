"""Writes a C file defining a file's bytes as a string: embed.py IN OUT NAME."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(out, "w") as f:
    f.write("/* Generated from %s by embed.py. */\n#include <stddef.h>\n\n" % src.split("/")[-1])
    f.write("const char %s[] =\n" % name)
    for i in range(0, len(data), 16):
        f.write('\t"' + "".join("\\x%02x" % b for b in data[i:i + 16]) + '"\n')
    f.write(";\nconst size_t %s_len = %d;\n" % (name, len(data)))
