#!/usr/bin/env bash
# The corpus builder (data/get-corpus.sh) on small fixtures made here: icon
# sets (one in iconify's "Emoji" category, one icon whose SVG is broken),
# emoji with keywords, one seen emoji drawn exactly like an unseen one, and
# Fashion-MNIST IDX files. Checks what reaches the shards, the several
# captions per image, the held-out check (and that it catches a leak), that
# two builds give the same bytes and that an interrupted build resumes.
# usage: tests/test_corpus.sh VLM   (a ctest)
set -euo pipefail
VLM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "test_corpus: FAILED: $*" >&2; exit 1; }

# ---- fixtures
mkdir -p "$T/iconify/json" "$T/emoji/img/apple/64" "$T/emoji/img/twitter/64" "$T/fm"
cat > "$T/iconify/collections.json" <<'EOF'
{"animals": {"name": "Animals", "category": "Thematic"}, "emo": {"name": "Emo", "category": "Emoji"},
 "flags": {"name": "Flags", "category": "Flags"}}
EOF
cat > "$T/iconify/json/animals.json" <<'EOF'
{"prefix": "animals", "width": 24, "height": 24,
 "icons": {"cat": {"body": "<circle cx='12' cy='12' r='8' fill='currentColor'/>"},
           "dog-outline": {"body": "<rect x='4' y='4' width='16' height='16' fill='currentColor'/>"},
           "bad-box": {"body": "<path d='M0 0L"},
           "wide-bus": {"body": "<rect width='48' height='24' fill='#36c'/>", "width": 48}},
 "aliases": {"kitty": {"parent": "cat"}, "flipped-cat": {"parent": "cat", "hFlip": true}},
 "categories": {"Animal / Pet": ["cat", "dog-outline"], "HomeAnimals": ["cat"]}}
EOF
cat > "$T/iconify/json/flags.json" <<'EOF'
{"prefix": "flags", "icons": {"jp-4x3": {"body": "<circle cx='8' cy='8' r='4' fill='#c00'/>"}}}
EOF
cat > "$T/iconify/json/emo.json" <<'EOF'
{"prefix": "emo", "icons": {"smile": {"body": "<circle cx='8' cy='8' r='6'/>"}}}
EOF
/usr/bin/python3 - "$T" <<'PY'
import gzip, os, struct, sys, zlib
t = sys.argv[1]
def png(path, rgb, w=8, h=8):
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))
    ch = lambda k, d: struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + ch(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + ch(b"IDAT", zlib.compress(raw)) + ch(b"IEND", b""))
e = os.path.join(t, "emoji")
png(f"{e}/img/apple/64/1f600.png", (250, 200, 0))
png(f"{e}/img/apple/64/1f436.png", (120, 80, 40))
png(f"{e}/img/apple/64/1f1e9-1f1ec.png", (0, 0, 200))     # a flag drawn exactly like ...
png(f"{e}/img/twitter/64/1f1ee-1f1f4.png", (0, 0, 200))   # ... this unseen one
open(f"{e}/train.tsv", "w").write("filepath\ttitle\nimg/apple/64/1f600.png\tgrinning face\n"
                                  "img/apple/64/1f436.png\tdog face\nimg/apple/64/1f1e9-1f1ec.png\tdiego garcia flag\n")
open(f"{e}/unseen.tsv", "w").write("filepath\tlabel\nimg/twitter/64/1f1ee-1f1f4.png\t0\n")
open(f"{t}/emojilib.json", "w").write('{"\U0001F600": ["grinning_face", "face", "smile", ":D"], "\U0001F436": ["dog_face", "pet"]}')
open(f"{t}/cldr.json", "w").write('{"annotations": {"annotations": {"\U0001F600": {"default": ["grin", "face"]}}}}')
fm = os.path.join(t, "fm")
open(f"{fm}/classnames.txt", "w").write("T-shirt/top\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot\n")
gzip.open(f"{fm}/train-images-idx3-ubyte.gz", "wb").write(struct.pack(">IIII", 2051, 2, 28, 28) + bytes(range(256)) * 6 + bytes(32))
gzip.open(f"{fm}/train-labels-idx1-ubyte.gz", "wb").write(struct.pack(">II", 2049, 2) + bytes([0, 9]))
PY

# a WordNet of nine nouns: cat -> feline -> carnivore -> animal -> organism ->
# whole -> object -> physical entity -> entity (a hyponym pointer before
# feline's hypernym); 'cat' has a second sense that is not its first
mkdir -p "$T/wn"
{
  echo "  1 licence header"
  prev=""
  i=1
  for w in entity physical_entity object whole organism animal carnivore feline; do
    if [[ -z $prev ]]; then ptrs="000"
    elif [[ $w == feline ]]; then ptrs="002 ~ 00000009 n 0000 @ $prev n 0000"
    else ptrs="001 @ $prev n 0000"; fi
    printf '%08d 03 n 01 %s 0 %s | gloss\n' "$i" "$w" "$ptrs"
    prev=$(printf '%08d' "$i")
    i=$((i + 1))
  done
  echo "00000009 05 n 02 cat 0 true_cat 0 001 @ 00000008 n 0000 | feline mammal"
} > "$T/wn/data.noun"
printf '  1 licence header\ncat n 2 1 @ 2 0 00000009 00000010\n' > "$T/wn/index.noun"

printf 'felines feline\nmice mouse\n' > "$T/wn/noun.exc"
# plurals (noun.exc, the head noun of a phrase) and WordNet's lexicographer files (a noun.Tops
# noun takes its hyponyms' file)
PYTHONPATH=$src/data /usr/bin/python3 - "$T/wn" <<'PY' || fail "plurals / lexicographer files"
import sys, corpus
wn = corpus.load_wordnet(sys.argv[1])
got = [corpus.plural(p, wn, h) for p, h in [("mouse", None), ("face with tears of joy", None), ("box", None),
       ("berry", None), ("biceps", None), ("woman running", "woman"), ("cat face", "cat"), ("type-5", None)]]
want = ["mice", "faces with tears of joy", "boxes", "berries", "biceps", "women running", "cat faces", "type-5"]
assert got == want, got
assert corpus.head_noun("cat face", wn) == "cat" and corpus.head_noun("true cat running", wn) == "cat", "head noun"
assert corpus.lexname(wn, "cat") == "animals" and corpus.lexname(wn, "feline") is None, "lexname"
# a country's flag emoji is captioned as the flag sets' icons, also by its ISO name; other flags keep WordNet's
assert corpus.flag_region("1f1f7-1f1fa") == "ru" and corpus.flag_region("1f3f4-e0067-e0062-e0065-e006e-e0067-e007f") == ""
assert corpus.flag_region("1f3f3-fe0f-200d-1f308") is None and corpus.flag_region("1f1e6") is None, "flag_region"
got = corpus.emoji_captions("russia flag", "1f1f7-1f1fa", ["flag"], {"ru": "russian federation"}, wn)
assert got == ["russia flag", "an emoji of a russia flag", "russia flag: flag", "a russia flag emoji, flag",
               "flag of russia", "the russia flag", "russia, flags", "flag of russian federation",
               "the russian federation flag", "russian federation, flags"], got
got = corpus.emoji_captions("england flag", "1f3f4-e0067-e0062-e0065-e006e-e0067-e007f", [], {"ru": "russia"}, wn)
assert got == ["england flag", "an emoji of an england flag", "flag of england", "the england flag", "england, flags"], got
got = corpus.emoji_captions("cat", "1f408", [], {}, wn)
assert got[:2] == ["cat", "an emoji of a cat"] and "cat, animals" in got, got
PY
build() { # build DIR
  WORDNET_DIR=$T/wn ICONIFY_DIR=$T/iconify EMOJI_DIR=$T/emoji EMOJILIB_JSON=$T/emojilib.json CLDR_JSON=$T/cldr.json FMNIST_DIR=$T/fm \
    EMOJI_REPEAT=2 SHARD_SIZE=4 SIZE=32 VLM=$VLM bash "$src/data/get-corpus.sh" "$1" > "$1.stats" 2> "$1.log" ||
    { cat "$1.log" >&2; fail "get-corpus.sh failed"; }
}
build "$T/c1"
c=$T/c1
cat "$c.log" >&2
# raw samples: 5 icons (emoji set left out) + 2 emoji x 2 copies (the twin left
# out) + 2 Fashion-MNIST = 11; the broken SVG is skipped when drawn: 10 in shards
grep -q '"samples": 11' "$c/stats.json" || fail "stats.json: $(cat "$c/stats.json")"
grep -q '"excluded_heldout_twins": 1' "$c/stats.json" || fail "twin not excluded: $(cat "$c/stats.json")"
[[ $(wc -l < "$c/exclude.txt") == 1 ]] && grep -q "1f1e9-1f1ec.png" "$c/exclude.txt" || fail "exclude.txt: $(cat "$c/exclude.txt")"
grep -q "skipped 1 unreadable" "$c.log" && grep -q "bad-box" "$c/manifest.tsv" || fail "broken SVG not reported"
! cut -f4 "$c/manifest.tsv" | grep -qx emo || fail "an Emoji-category set reached the manifest"
spec=$(cat "$c/shards.txt")
# each source starts a shard of its own (icons 4 + 1, emoji 4, Fashion-MNIST 2),
# named by DIR/shards.SOURCE.txt so a trainer can weight the sources
[[ $spec == "$c/shards/{000000..000003}.tar" ]] || fail "shards.txt: $spec"
[[ $(cat "$c/shards.iconify.txt") == "$c/shards/{000000..000001}.tar" &&
   $(cat "$c/shards.emoji.txt") == "$c/shards/{000002..000002}.tar" &&
   $(cat "$c/shards.fashion-mnist.txt") == "$c/shards/{000003..000003}.tar" ]] ||
  fail "per-source shards: $(cat "$c/sources.tsv")"
[[ $(awk -F'\t' 'NR > 1 { print $1 "\t" $3 }' "$c/manifest.tsv" | sort -u | cut -f1 | uniq -d | wc -l) == 0 ]] ||
  fail "a shard holds two sources"
"$VLM" data stats "$(cat "$c/shards.emoji.txt")" | grep -q "samples: 4" || fail "emoji shards: not the 2 x 2 emoji"
"$VLM" data stats "$spec" > "$T/stats.txt" || fail "vlm data stats"
grep -q "samples: 10" "$T/stats.txt" || { cat "$T/stats.txt" >&2; fail "10 samples expected"; }
# several captions per image, one per line: names, aliases, categories, keywords
mkdir "$T/x" && tar -xf "$c/shards/000000.tar" -C "$T/x"
cat_txt=$(grep -lx "cat" "$T"/x/*.txt) || fail "no caption 'cat' in shard 0"
grep -qx "cat, kitty" "$cat_txt" && grep -qx "cat, animal & pet" "$cat_txt" && grep -qx "an icon of a cat" "$cat_txt" &&
  grep -qx "cat, home animals" "$cat_txt" &&
  grep -qx "cat: feline, carnivore, animal, organism" "$cat_txt" && grep -qx "a cat, a kind of feline" "$cat_txt" &&
  grep -qx "cats: felines, carnivores, animals, organisms" "$cat_txt" && grep -qx "cat, animals" "$cat_txt" &&
  ! grep -q "flipped" "$cat_txt" || fail "cat captions: $(cat "$cat_txt")"
grep -qx "dog" "$T"/x/*.txt || fail "style word kept in 'dog-outline'"
! grep -q "^dog: \|kind of" "$(grep -lx "dog" "$T"/x/*.txt)" || fail "hypernyms for 'dog', which is not in the WordNet"
# a flag set's icon named by a country code is captioned with the country (Debian iso-codes)
grep -q "flags:jp-4x3	jp 4x3 || .* || flag of japan || the japan flag || japan, flags" "$c/manifest.tsv" ||
  fail "flag captions: $(grep flags: "$c/manifest.tsv")"
[[ -f ${cat_txt%.txt}.png ]] || fail "no PNG beside $cat_txt"
grep -q "grinning face: face, smile, grin ||" "$c/manifest.tsv" || fail "emoji keywords missing: $(grep grinning "$c/manifest.tsv")"
tar -tf "$c/shards/000000.tar" | grep -q "svg$" && fail "SVG left in the shards (not rasterised)"
# the wide icon is drawn 32 x 16 over white
"$VLM" data hash "$spec" > "$T/hash"
grep -q -- "-32x16" "$T/hash" || fail "wide icon size: $(cat "$T/hash")"
# the held-out check passes on the corpus and catches the leak in train.tsv
bash "$src/scripts/check-corpus.sh" "$spec" "$T/emoji/unseen.tsv" | grep -q '"overlap": 0' || fail "check-corpus on the corpus"
if VLM=$VLM bash "$src/scripts/check-corpus.sh" "$T/emoji/train.tsv" "$T/emoji/unseen.tsv" > "$T/leak" 2>&1; then
  fail "check-corpus missed the twin in train.tsv"
fi
grep -q '"overlap": 1' "$T/leak" || fail "leak report: $(cat "$T/leak")"
# deterministic: a second build gives the same bytes; an interrupted one resumes
build "$T/c2"
for f in "$c"/shards/*.tar; do cmp -s "$f" "$T/c2/shards/$(basename "$f")" || fail "$(basename "$f") differs between builds"; done
rm "$T/c2/shards/000001.tar"
build "$T/c2"
for f in "$c"/shards/*.tar; do cmp -s "$f" "$T/c2/shards/$(basename "$f")" || fail "$(basename "$f") differs after resume"; done
# a build of other captions is made again, not resumed
echo 1 > "$T/c2/VERSION"
printf 'stale' > "$T/c2/shards/000002.tar"
build "$T/c2"
grep -q "building again" "$T/c2.log" || fail "old version not reported: $(cat "$T/c2.log")"
for f in "$c"/shards/*.tar; do cmp -s "$f" "$T/c2/shards/$(basename "$f")" || fail "$(basename "$f") differs after a version change"; done
echo "test_corpus: all checks passed"
