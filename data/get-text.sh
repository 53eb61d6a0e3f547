#!/usr/bin/env bash
# Builds the language-model text corpus into DIR (default data/text,
# gitignored) from Debian's wordnet-base (installed if missing): one document
# per synset, "synonym, synonym: gloss" with the gloss's example sentences,
# for nouns, verbs, adjectives and adverbs (~117k synsets). A held-out split
# by synset (every synset whose offset hash falls in 1/20) is written once to
# heldout.txt and never trained on. Optional: CAPTIONS=FILE... appends the
# lines of these files (caption text of other datasets) to train.txt.
#   DIR/train.txt  DIR/heldout.txt  DIR/stats.json
# usage: data/get-text.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/text}
src=${WORDNET_DIR:-/usr/share/wordnet}
if [[ -z ${WORDNET_DIR:-} ]] && ! dpkg-query -W -f='${Status}' wordnet-base 2>/dev/null | grep -q "install ok installed"; then
  echo "get-text: installing wordnet-base" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null
fi
mkdir -p "$dir"
if [[ -f $dir/train.txt && -f $dir/heldout.txt && -f $dir/stats.json ]]; then
  cat "$dir/stats.json"
  exit 0
fi
/usr/bin/python3 - "$src" "$dir" ${CAPTIONS:-} <<'PY'
import hashlib, json, os, sys
src, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
train, held = [], []
for pos in ("noun", "verb", "adj", "adv"):
    path = os.path.join(src, "data." + pos)
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            fields = head.split()
            off, n = fields[0], int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ") for i in range(n)]
            words = [w.split("(")[0] for w in words]  # adjective markers: "long(a)"
            doc = f"{', '.join(dict.fromkeys(words))}: {' '.join(gloss.split())}"
            h = hashlib.sha1(f"{pos}:{off}".encode()).digest()[0]
            (held if h % 20 == 0 else train).append(doc)
for p in extra:
    with open(p, encoding="utf-8") as f:
        train.extend(l.strip() for l in f if l.strip())
for name, docs in (("train.txt", train), ("heldout.txt", held)):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(docs) + "\n")
    os.replace(tmp, os.path.join(out, name))
words = lambda docs: sum(len(d.split()) for d in docs)
stats = {"source": "wordnet-base " + src, "train_docs": len(train), "heldout_docs": len(held),
         "train_words": words(train), "heldout_words": words(held), "extra_files": extra}
with open(os.path.join(out, "stats.json"), "w") as f:
    json.dump(stats, f)
    f.write("\n")
print(json.dumps(stats))
PY
