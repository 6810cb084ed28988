#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate pool metadata XML in thin_dump's format for the compatibility tests.

usage: gen_xml.py SEED DEVICES MAPPINGS [--lookups FILE]

Devices get ranges and single mappings (ascending, non-overlapping), varied times up to
the pool time, and some devices copy whole stretches of another device's mappings (as a
snapshot would), so data blocks are shared. With --lookups, every mapping is also written
to FILE as "dev vblock data_block time" lines (the oracle for lookups), and each device as
"D dev transaction creation_time snap_time".
"""
import random
import sys


def main():
    seed, ndev, nmap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    lookups = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--lookups" else None
    rnd = random.Random(seed)
    time = rnd.randint(5, 300)
    trans = rnd.randint(ndev, 10**6)
    ids = sorted(rnd.sample(range(0, 5000), ndev))
    per_dev = max(1, nmap // ndev)
    next_data = 0
    devs = []
    for i, dev in enumerate(ids):
        maps = []  # (vblock, data, time)
        if i > 0 and rnd.random() < 0.4 and devs[-1][1]:
            # share a stretch of the previous device's mappings
            src = devs[-1][1]
            a = rnd.randrange(len(src))
            b = min(len(src), a + rnd.randint(1, per_dev // 2 + 1))
            maps.extend(src[a:b])
        v = maps[-1][0] + 1 + rnd.randint(0, 50) if maps else rnd.randint(0, 1000)
        while len(maps) < per_dev:
            t = rnd.randint(0, time)
            if rnd.random() < 0.5:
                n = rnd.randint(2, 300)
                for k in range(n):
                    maps.append((v + k, next_data + k, t))
                v += n
                next_data += n
            else:
                maps.append((v, next_data, t))
                v += 1
                next_data += 1 + rnd.randint(0, 3)
            v += rnd.randint(0, 20)
        maps.sort()
        devs.append((dev, maps))
    nr_data = next_data + rnd.randint(0, 10000)
    out = sys.stdout
    out.write('<superblock uuid="" time="%d" transaction="%d" flags="0" version="2" '
              'data_block_size="%d" nr_data_blocks="%d">\n'
              % (time, trans, rnd.choice([128, 256, 1024, 2048]), nr_data))
    lk = open(lookups, "w") if lookups else None
    for dev, maps in devs:
        ctime = rnd.randint(0, time)
        stime = rnd.randint(ctime, time)
        dtrans = rnd.randint(0, trans)
        out.write('  <device dev_id="%d" mapped_blocks="%d" transaction="%d" '
                  'creation_time="%d" snap_time="%d">\n'
                  % (dev, len(maps), dtrans, ctime, stime))
        if lk:
            lk.write("D %d %d %d %d\n" % (dev, dtrans, ctime, stime))
        i = 0
        while i < len(maps):
            j = i + 1
            while (j < len(maps) and maps[j][0] == maps[j - 1][0] + 1
                   and maps[j][1] == maps[j - 1][1] + 1 and maps[j][2] == maps[i][2]):
                j += 1
            if j - i == 1:
                out.write('    <single_mapping origin_block="%d" data_block="%d" time="%d"/>\n'
                          % maps[i])
            else:
                out.write('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" '
                          'time="%d"/>\n' % (maps[i][0], maps[i][1], j - i, maps[i][2]))
            i = j
        if lk:
            for m in maps:
                lk.write("%d %d %d %d\n" % (dev, m[0], m[1], m[2]))
        out.write('  </device>\n')
    out.write('</superblock>\n')
    if lk:
        lk.close()


main()
