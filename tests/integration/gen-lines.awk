# gen-lines.awk -- n deterministic text lines (~54 bytes each) for the sort test.
#
# awk -v n=1200000 -f gen-lines.awk > lines.txt
# Park-Miller generator: every product stays below 2^53, so any awk computes
# it exactly and the file is the same everywhere.
BEGIN {
	x = 20240601
	words = "alphabetagammadeltaepsilonzetaetatheta"
	tail = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
	for (i = 0; i < n; i++) {
		x = (x * 16807) % 2147483647
		y = (x * 16807) % 2147483647
		printf "%010d %08x %s-%d %s\n", x, (y % 65536) * 65536 + i % 65536,
		    substr(words, 1 + x % 30, 1 + i % 9), i, substr(tail, 1, x % 40)
		x = y
	}
}
