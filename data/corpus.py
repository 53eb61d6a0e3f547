#!/usr/bin/python3
"""Writes the source shards of the image-caption corpus (data/get-corpus.sh).

Stage 1 of 2: every sample goes into an uncompressed tar `raw/NNNNNN.tar` as
KEY.svg|png plus KEY.txt (several captions, one per line). Stage 2 (the shell
script) rasterises the SVG with `vlm data convert --rasterize`. Only the
standard library; deterministic (sorted inputs, fixed tar metadata); a shard
that already exists is not written again, so an interrupted build resumes.

usage: corpus.py OUT ICONIFY_DIR EMOJI_DIR EMOJILIB_JSON CLDR_JSON FMNIST_DIR
       [--icons-per-set N] [--emoji-repeat R] [--shard-size N] [--countries ISO_3166_1_JSON]
       [--wordnet WORDNET_DICT_DIR]

The captions' version is VERSION: a build of another version is thrown away
and made again rather than resumed (its shards would mix two caption sets).
"""
import argparse
import hashlib
import io
import json
import os
import re
import struct
import sys
import tarfile
import zlib
import gzip

# 1: names, aliases, categories; 2: camel-case categories split ("MoneyShopping"),
# flag sets captioned with country names, logo sets with "logo"; 3: each source
# starts a shard of its own (sources.tsv), the emoji are written once by default
# (a trainer weights them: vlm pretrain --train-data-upsampling-factors); a name
# that is a WordNet noun is also captioned with its hypernyms ("dog: canine, ...,
# animal, organism, living thing"); 4: a category of several parts keeps them
# joined by "&" ("cat, animal & pet", was "cat, animal, pet"); 5: names in the plural with
# their hypernyms in the plural ("cats: felines, carnivores, animals, organisms"), and a name
# with its WordNet lexicographer file ("cat, animals"; "pizza, foods & drinks"): captions so
# far named one thing each, and a class name that is a plural group ("animals & nature") was
# never a caption; 6: an emoji of a country's flag ('japan flag', found by its regional
# indicator code points) is captioned as the flag sets' icons ('flag of japan', 'japan, flags',
# also by its ISO name) instead of with WordNet's words for 'flag', which all flags shared.
VERSION = 6

# Style words that name how an icon is drawn, not what it shows.
STYLE = set("""outline outlined outlines fill filled solid line lines linear bold light thin duotone twotone
two tone round rounded sharp regular broken bulk stroke strokes alt variant sm lg md xs xl baseline o r s
fat duo glyph glyphs 16 20 24 28 32 48 64 12 10 14 18 96 mini micro small large""".split())


def words_of(name):
    """'shopping-cart-outline-24' -> ['shopping', 'cart']"""
    parts = [p for p in re.split(r"[-_:/\s.]+", name.lower()) if p]
    return [p for p in parts if p not in STYLE]


def article(phrase):
    return "an" if phrase[:1] in "aeiou" else "a"


# WordNet's lexicographer files of nouns (its 25 semantic groups), numbered as in
# field 2 of data.noun, named by the descriptions of lexnames(5) in the plural,
# "and" written "&" as in the categories (version 4). 03 (noun.Tops) is left out.
LEXNAMES = {4: "acts & actions", 5: "animals", 6: "man-made objects", 7: "attributes of people & objects",
            8: "body parts", 9: "cognitive processes & contents", 10: "communicative processes & contents",
            11: "natural events", 12: "feelings & emotions", 13: "foods & drinks",
            14: "groupings of people or objects", 15: "spatial positions", 16: "goals", 17: "natural objects",
            18: "people", 19: "natural phenomena", 20: "plants", 21: "possessions",
            22: "natural processes", 23: "quantities & units of measure", 24: "relations",
            25: "shapes", 26: "states of affairs", 27: "substances", 28: "time & temporal relations"}

# Plurals that WordNet's noun.exc lacks (it lists the plurals of its own irregular nouns only).
PLURALS = {"man": "men", "woman": "women", "person": "people"}

# A name's head noun comes before these words: "face with tears of joy", "flag of japan".
HEAD_END = re.compile(r" (?:with|of|in|on|under|over|and|or|for|from|at|to|facing|without|holding) ")


def load_wordnet(d):
    """WordNet's nouns (Debian wordnet-base): (synsets: offset -> (first word,
    first hypernym offset, lexicographer file, hyponym offsets), lemmas: lemma -> offset of its
    first sense, WordNet's most frequent one, irregular plurals: singular ->
    plural, and the set of those plurals, from noun.exc). Empty when d has no index.noun."""
    if not d or not os.path.isfile(os.path.join(d, "index.noun")):
        return {}, {}, {}, set()
    syn, first, irregular, plurals = {}, {}, {}, set()
    with open(os.path.join(d, "data.noun"), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue  # licence header
            fl = line.split("|", 1)[0].split()
            n = int(fl[3], 16)
            p = 4 + 2 * n
            hyp, hypo = None, []
            for i in range(int(fl[p])):
                if fl[p + 1 + 4 * i] in ("@", "@i") and hyp is None:
                    hyp = fl[p + 2 + 4 * i]
                if fl[p + 1 + 4 * i] == "~":
                    hypo.append(fl[p + 2 + 4 * i])
            syn[fl[0]] = (fl[4].replace("_", " ").lower(), hyp, int(fl[1]), hypo)
    with open(os.path.join(d, "index.noun"), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fl = line.split()
            first.setdefault(fl[0].replace("_", " ").lower(), fl[-int(fl[2])])
    exc = os.path.join(d, "noun.exc")
    for line in (open(exc, encoding="latin-1") if os.path.isfile(exc) else []):
        fl = line.split()
        for sing in fl[1:]:
            if fl[0] != sing and "_" not in fl[0]:
                irregular.setdefault(sing, fl[0])
                plurals.add(fl[0])
    return syn, first, irregular, plurals


def plural_word(w, wn):
    """'mouse' -> 'mice' (noun.exc), 'box' -> 'boxes', 'berry' -> 'berries'; a word that
    already is a plural ('biceps', 'media': noun.exc's plurals) stays."""
    irregular, plurals = (wn[2], wn[3]) if wn else ({}, set())
    if w in PLURALS:
        return PLURALS[w]
    if w in plurals or re.search(r"[^s]s$", w):
        return w
    if w in irregular:
        return irregular[w]
    if re.search(r"(?:s|x|z|ch|sh)$", w):
        return w + "es"
    if re.search(r"[^aeiou]y$", w):
        return w[:-1] + "ies"
    return w + "s"


def plural(phrase, wn, head=None):
    """'face with tears of joy' -> 'faces with tears of joy'; 'man running' -> 'men running'
    (head 'man'); the head noun is else the last word before 'with', 'of', ..."""
    m = HEAD_END.search(phrase)
    part, rest = (phrase[:m.start()], phrase[m.start():]) if m else (phrase, "")
    w = part.split(" ")
    i = len(w) - 1
    if head and " " not in head and head in w and w[-1] != "face":  # 'cat face' -> 'cat faces'
        i = len(w) - 1 - w[::-1].index(head)
    if not w[i] or not w[i][-1].isalpha():
        return phrase  # "type-5", "4x3": no plural
    return " ".join(w[:i] + [plural_word(w[i], wn)] + w[i + 1:]) + rest


def head_noun(phrase, wn):
    """The noun of phrase that WordNet knows and its hypernyms describe: the whole
    phrase if it is one, else the last word before 'with', 'of', ... that is a
    noun, preferring one not ending in -ing ('man running' -> 'man'), and a noun
    before 'face' ('cat face' -> 'cat': an emoji drawn as a face names what it is of)."""
    first = wn[1] if wn else {}
    if phrase in first:
        return phrase
    m = HEAD_END.search(phrase)
    words = [x for x in (phrase[:m.start()] if m else phrase).split(" ") if x in first]
    plain = [x for x in words if not x.endswith("ing")]
    if len(plain) > 1 and plain[-1] == "face":
        plain.pop()
    return (plain or words or [None])[-1]


def hypernyms(wn, phrase):
    """The hypernyms of phrase's first noun sense, nearest first, less the four
    most general levels (entity, physical entity, object, whole, ...: every
    noun has them)."""
    syn, first = (wn[0], wn[1]) if wn else ({}, {})
    off, chain, seen = first.get(phrase), [], set()
    while off in syn and off not in seen:
        seen.add(off)
        off = syn[off][1]
        if off in syn:
            chain.append(syn[off][0])
    return [h for h in chain[:max(len(chain) - 4, 0)] if h != phrase]


def lexname(wn, noun):
    """The lexicographer file of noun's first sense, described ('animals'), or None; a
    noun of noun.Tops ('person', 'food') takes the most common one of its hyponyms ('people')."""
    syn, first = (wn[0], wn[1]) if wn else ({}, {})
    off = first.get(noun)
    if off not in syn:
        return None
    lex = syn[off][2]
    if lex == 3:
        files = [syn[h][2] for h in syn[off][3] if h in syn and syn[h][2] != 3]
        lex = max(sorted(set(files)), key=files.count) if files else 3
    return LEXNAMES.get(lex)


def wordnet_captions(phrase, wn):
    """'dog: canine, carnivore, ..., animal, organism, living thing', 'a dog, a kind of canine'
    (a phrase that is a WordNet noun); 'dogs: canines, ..., animals, ...' and 'dog, animals'
    (from its head noun: 'tired face' -> 'tired faces: ..., body parts' by 'face')."""
    out, h = [], hypernyms(wn, phrase)
    if h:
        out = [f"{phrase}: {', '.join(dict.fromkeys(h))}", f"{article(phrase)} {phrase}, a kind of {h[0]}"]
    head = head_noun(phrase, wn)
    if head is None:
        return out
    hh = [plural(x, wn) for x in dict.fromkeys(h if head == phrase else hypernyms(wn, head))]
    if hh:
        out.append(f"{plural(phrase, wn, head)}: {', '.join(hh)}")
    ln = lexname(wn, head)
    if ln:
        out.append(f"{phrase}, {ln}")
    return out


def flag_captions(country):
    """What a flag set's icon and a country's flag emoji are both captioned with."""
    return [f"flag of {country}", f"the {country} flag", f"{country}, flags"]


def icon_captions(name, aliases, cats, kind=None, countries=None, wn=None):
    """Captions of one icon; kind is what its whole set draws ("flag", "logo"):
    an icon named 'jp' in a flag set is the flag of Japan."""
    w = words_of(name)
    if not w:
        return []
    phrase = " ".join(w)
    caps = [phrase, f"an icon of {article(phrase)} {phrase}", f"{article(phrase)} {phrase} icon"]
    if kind == "flag":
        country = (countries or {}).get(w[0], phrase) if len(w[0]) == 2 else phrase
        caps += flag_captions(country)
    elif kind == "logo":
        caps.append(f"{phrase} logo")
    for a in aliases:
        aw = " ".join(words_of(a))
        if aw and aw != phrase:
            caps.append(f"{phrase}, {aw}")
    for c in cats:
        c = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", c)  # "MoneyShopping" -> "Money Shopping"
        # "Food / Drink", "Audio & Video", "Files and Folders": the parts joined by "&", so
        # the text tower meets "&" as a conjunction (before v4 it only saw it in country names)
        parts = [p.strip() for p in re.split(r"\s*(?:[/+&]|\band\b)\s*", c.lower()) if p.strip()]
        if parts:
            caps.append(f"{phrase}, {' & '.join(parts)}")
    if kind is None:
        caps += wordnet_captions(phrase, wn)
    seen, out = set(), []
    for c in caps:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


# Monochrome icons are drawn in black half of the time and otherwise in one of
# these colours (chosen by a hash of the icon's name, so builds repeat), so
# that colour is not a shortcut between icons and emoji.
PALETTE = ["#d32f2f", "#1976d2", "#388e3c", "#fbc02d", "#7b1fa2", "#f57c00", "#0097a7", "#5d4037",
           "#c2185b", "#455a64", "#689f38", "#303f9f"]


def svg_of(name, icon, dw, dh):
    left, top = icon.get("left", 0), icon.get("top", 0)
    w, h = icon.get("width", dw), icon.get("height", dh)
    hb = hashlib.sha1(name.encode()).digest()
    color = "#000" if hb[0] < 128 else PALETTE[hb[1] % len(PALETTE)]
    body = icon["body"].replace("currentColor", color)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{w}" height="{h}" viewBox="{left} {top} {w} {h}">{body}</svg>').encode()


# What a whole set draws, from its iconify category.
SET_KIND = {"Flags": "flag", "Logos": "logo"}


def load_countries(path):
    """ISO 3166-1 alpha-2 code (lower case) -> common name, lower case (Debian iso-codes)."""
    if not path or not os.path.isfile(path):
        return {}
    out = {}
    for c in json.load(open(path, encoding="utf-8"))["3166-1"]:
        out[c["alpha_2"].lower()] = c.get("common_name", c["name"]).lower()
    return out


def iconify_samples(root, per_set, countries, wn=None):
    """(source, set, key, ext, bytes, captions) for every icon outside the Emoji category."""
    coll = json.load(open(os.path.join(root, "collections.json"), encoding="utf-8"))
    for prefix in sorted(coll):
        if coll[prefix].get("category") == "Emoji":
            continue  # no emoji image of any style enters through iconify
        kind = SET_KIND.get(coll[prefix].get("category"))
        path = os.path.join(root, "json", prefix + ".json")
        if not os.path.isfile(path):
            continue
        d = json.load(open(path, encoding="utf-8"))
        dw, dh = d.get("width", 16), d.get("height", 16)
        cats = {}
        for c, names in (d.get("categories") or {}).items():
            for n in names:
                cats.setdefault(n, []).append(c)
        aliases = {}
        for a, v in (d.get("aliases") or {}).items():
            if set(v) <= {"parent"}:  # a plain second name (no flip/rotate)
                aliases.setdefault(v["parent"], []).append(a)
        names = sorted(d.get("icons", {}))
        if per_set:
            names = names[:per_set]
        for n in names:
            icon = d["icons"][n]
            if icon.get("hidden") or "body" not in icon:
                continue
            caps = icon_captions(n, sorted(aliases.get(n, [])), sorted(cats.get(n, [])), kind, countries, wn)
            if caps:
                yield ("iconify", prefix, f"{prefix}:{n}", "svg", svg_of(f"{prefix}:{n}", icon, dw, dh), caps)


def emoji_char(unified):
    return "".join(chr(int(u, 16)) for u in unified.split("-"))


def flag_region(unified):
    """The ISO 3166-1 code of a flag emoji ('1f1ef-1f1f5' -> 'jp': two regional indicator
    letters), '' for a subdivision flag ('1f3f4-e0067-...': England), None for other emoji."""
    u = unified.lower().split("-")
    if len(u) == 2 and all(0x1F1E6 <= int(x, 16) <= 0x1F1FF for x in u):
        return "".join(chr(ord("a") + int(x, 16) - 0x1F1E6) for x in u)
    return "" if u[0] == "1f3f4" and len(u) > 2 and u[1].startswith("e00") else None


def emoji_captions(title, unified, kw, countries=None, wn=None):
    """Captions of one emoji: its name, keywords, WordNet's words for its head noun; a
    country's flag ('japan flag') is captioned as the flag sets' icons are ('flag of japan',
    'japan, flags', and the ISO name when it differs: 'flag of russian federation'), not
    with the WordNet captions of 'flag' that every flag would share."""
    caps = [title, f"an emoji of {article(title)} {title}"]
    if kw:
        caps.append(f"{title}: {', '.join(kw[:8])}")
        caps.append(f"{article(title)} {title} emoji, {', '.join(kw[:3])}")
    region = flag_region(unified)
    if region is None or not title.endswith(" flag"):
        return caps + wordnet_captions(title, wn)
    names = [title[:-len(" flag")]]
    iso = (countries or {}).get(region)
    if iso and iso != names[0]:
        names.append(iso)
    for n in names:
        caps += flag_captions(n)
    return caps


def emoji_samples(edir, emojilib, cldr, repeat, exclude, wn=None, countries=None):
    """The training split of the emoji (train.tsv), captioned with name + keywords,
    less the images in `exclude` (real paths: pixel-identical to a held-out one)."""
    lib = json.load(open(emojilib, encoding="utf-8"))
    ann = json.load(open(cldr, encoding="utf-8"))["annotations"]["annotations"]
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(edir, "train.tsv"), encoding="utf-8")][1:]
    for rep in range(repeat):
        for i, (rel, title) in enumerate(rows):
            if os.path.realpath(os.path.join(edir, rel)) in exclude:
                continue
            base = os.path.basename(rel).rsplit(".", 1)[0]
            ch = emoji_char(base.upper())
            kw = []
            for k in lib.get(ch, []) + lib.get(ch.replace("\ufe0f", ""), []):
                k = k.replace("_", " ").lower()
                if re.fullmatch(r"[a-z0-9][a-z0-9 '&.-]*", k) and k != title and k not in kw:  # no ":D"
                    kw.append(k)
            a = ann.get(ch) or ann.get(ch.replace("\ufe0f", "")) or {}
            for k in a.get("default", []):
                k = k.lower()
                if re.fullmatch(r"[a-z0-9][a-z0-9 '&.-]*", k) and k != title and k not in kw:
                    kw.append(k)
            caps = emoji_captions(title, base, kw, countries, wn)
            with open(os.path.join(edir, rel), "rb") as f:
                data = f.read()
            yield ("emoji", rel.split("/")[1], f"emoji:{rep}:{i}", "png", data, caps)


def png_gray(px, w, h):
    raw = b"".join(b"\0" + px[y * w:(y + 1) * w] for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def fashion_samples(fdir):
    names = [l.strip() for l in open(os.path.join(fdir, "classnames.txt"), encoding="utf-8") if l.strip()]
    img = gzip.open(os.path.join(fdir, "train-images-idx3-ubyte.gz")).read()
    lab = gzip.open(os.path.join(fdir, "train-labels-idx1-ubyte.gz")).read()
    n, h, w = struct.unpack(">III", img[4:16])
    for i in range(n):
        c = names[lab[8 + i]].lower()
        parts = [p.strip() for p in c.split("/")]
        phrase = " or ".join(parts)
        caps = [phrase, f"a photo of {article(phrase)} {phrase}", f"a grayscale photo of {article(phrase)} {phrase}",
                f"{phrase}, clothing"]
        px = img[16 + i * h * w:16 + (i + 1) * h * w]
        yield ("fashion-mnist", "train", f"fmnist:{i}", "png", png_gray(px, w, h), caps)


def add(tar, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 0
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def start_version(out):
    """Resume only a build of this VERSION: another version's shards are removed."""
    vf = os.path.join(out, "VERSION")
    old = open(vf).read().strip() if os.path.exists(vf) else None
    if old != str(VERSION):
        removed = 0
        for sub in ("raw", "shards"):
            d = os.path.join(out, sub)
            for f in (os.listdir(d) if os.path.isdir(d) else []):
                if f.endswith(".tar") or f.endswith(".tmp"):
                    os.remove(os.path.join(d, f))
                    removed += 1
        if removed:
            print(f"corpus: captions version {old or 1} -> {VERSION}: building again", file=sys.stderr)
        with open(vf + ".tmp", "w") as f:
            f.write(f"{VERSION}\n")
        os.rename(vf + ".tmp", vf)


def main():
    ap = argparse.ArgumentParser()
    for a in ("out", "iconify", "emoji", "emojilib", "cldr", "fmnist"):
        ap.add_argument(a)
    ap.add_argument("--icons-per-set", type=int, default=0)
    ap.add_argument("--emoji-repeat", type=int, default=1)
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--exclude", help="file of image paths to leave out (one per line)")
    ap.add_argument("--countries", default="/usr/share/iso-codes/json/iso_3166-1.json",
                    help="ISO 3166-1 JSON (Debian iso-codes): names for the flag sets' country codes")
    ap.add_argument("--wordnet", default="/usr/share/wordnet",
                    help="WordNet dictionary folder (Debian wordnet-base): hypernym captions of names that are nouns")
    args = ap.parse_args()
    start_version(args.out)
    exclude = set()
    if args.exclude:
        exclude = {os.path.realpath(l.rstrip("\n")) for l in open(args.exclude, encoding="utf-8") if l.strip()}
    raw = os.path.join(args.out, "raw")
    os.makedirs(raw, exist_ok=True)
    wn = load_wordnet(args.wordnet)
    countries = load_countries(args.countries)
    sources = [iconify_samples(args.iconify, args.icons_per_set, countries, wn),
               emoji_samples(args.emoji, args.emojilib, args.cldr, args.emoji_repeat, exclude, wn, countries),
               fashion_samples(args.fmnist)]
    stats = {}
    images, captions, words = set(), set(), set()
    manifest = open(os.path.join(args.out, "manifest.tsv.tmp"), "w", encoding="utf-8")
    manifest.write("shard\tkey\tsource\tset\tname\tcaptions\n")
    shard, in_shard, tar, k, cur = -1, 0, None, 0, None
    ranges = {}  # source -> [first shard, last shard]: each source starts a shard of its own,
    # so a trainer can weight the sources (vlm pretrain --train-data-upsampling-factors)
    for src in sources:
        for source, sub, name, ext, data, caps in src:
            if shard < 0 or in_shard == args.shard_size or source != cur:
                if tar is not None:
                    tar.close()
                    os.rename(tmp, final)
                shard += 1
                final = os.path.join(raw, f"{shard:06d}.tar")
                tmp = final + ".tmp"
                # an existing shard is complete (written by rename): skip its samples
                done = os.path.join(args.out, "shards", f"{shard:06d}.tar")
                tar = (None if os.path.exists(final) or os.path.exists(done)
                       else tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT))
                in_shard = 0
                cur = source
                ranges.setdefault(source, [shard, shard])[1] = shard
            key = f"{in_shard:09d}"  # as vlm data convert names it in the final shard
            if tar is not None:
                add(tar, f"{key}.{ext}", data)
                add(tar, f"{key}.txt", ("\n".join(caps) + "\n").encode())
            manifest.write(f"{shard:06d}\t{key}\t{source}\t{sub}\t{name}\t{' || '.join(caps)}\n")
            s = stats.setdefault(source, {"pairs": 0, "images": 0, "captions": set(), "words": set()})
            h = hashlib.sha1(data).digest()
            s["pairs"] += len(caps)
            s["images"] += h not in images
            images.add(h)
            for c in caps:
                s["captions"].add(c)
                captions.add(c)
                for w in re.findall(r"[a-z0-9']+", c.lower()):
                    s["words"].add(w)
                    words.add(w)
            s.setdefault("samples", 0)
            s["samples"] += 1
            in_shard += 1
            k += 1
    if tar is not None:
        tar.close()
        os.rename(tmp, final)
    manifest.close()
    os.rename(os.path.join(args.out, "manifest.tsv.tmp"), os.path.join(args.out, "manifest.tsv"))
    out = {"samples": k, "pairs": sum(s["pairs"] for s in stats.values()), "distinct_images": len(images),
           "distinct_captions": len(captions), "distinct_words": len(words), "shards": shard + 1 if k else 0,
           "version": VERSION, "emoji_repeat": args.emoji_repeat, "excluded_heldout_twins": len(exclude), "per_source": {}}
    for src, s in stats.items():
        out["per_source"][src] = {"samples": s["samples"], "pairs": s["pairs"], "distinct_images": s["images"],
                                  "distinct_captions": len(s["captions"]), "distinct_words": len(s["words"]),
                                  "shards": ranges[src]}
    with open(os.path.join(args.out, "sources.tsv.tmp"), "w") as f:
        for src, (a, b) in ranges.items():
            f.write(f"{src}\t{a:06d}\t{b:06d}\n")
    os.rename(os.path.join(args.out, "sources.tsv.tmp"), os.path.join(args.out, "sources.tsv"))
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(json.dumps({k2: v for k2, v in out.items() if k2 != "per_source"}))


if __name__ == "__main__":
    main()
