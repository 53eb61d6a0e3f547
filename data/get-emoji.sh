#!/usr/bin/env bash
# Fetches the emoji-datasource 64x64 PNGs of four vendors (npm packages
# emoji-datasource-{apple,google,twitter,facebook}@16.0.0) once into DIR
# (default data/emoji, gitignored) and writes the manifests (docs/DATA.md):
#   train.tsv            filepath, title   seen emoji; apple, google, facebook; + skin tones
#   val_twitter.tsv      filepath, title   seen emoji; twitter (base images)
#   unseen.tsv           filepath, label   unseen emoji (sort_order % 5 == 0); all vendors
#   unseen_classnames.txt                  label = line number
#   categories.tsv       filepath, label   all emoji by top-level category; all vendors
#   category_classnames.txt                9 categories ("Component" dropped)
# usage: data/get-emoji.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/emoji}
ver=16.0.0
vendors=(apple google twitter facebook)
command -v npm >/dev/null || { echo "get-emoji: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir/.cache"
dir=$(cd "$dir" && pwd)
for v in "${vendors[@]}"; do
  [[ -f $dir/img/$v/64/.complete && -f $dir/emoji-$v.json ]] && continue
  pkg=emoji-datasource-$v@$ver
  tgz=$dir/.cache/emoji-datasource-$v-$ver.tgz
  if [[ ! -f $tgz ]]; then
    echo "get-emoji: npm pack $pkg" >&2
    (cd "$dir/.cache" && npm pack --silent "$pkg" >/dev/null)
  fi
  tmp=$dir/.cache/unpack-$v
  rm -rf "$tmp" && mkdir -p "$tmp"
  # only the 64px images and the metadata (the package also has sprite sheets)
  tar -xzf "$tgz" -C "$tmp" package/emoji.json "package/img/$v/64"
  mkdir -p "$dir/img/$v"
  rm -rf "$dir/img/$v/64"
  mv "$tmp/package/img/$v/64" "$dir/img/$v/64"
  mv "$tmp/package/emoji.json" "$dir/emoji-$v.json"
  rm -rf "$tmp" "$tgz"
  touch "$dir/img/$v/64/.complete"
done
rmdir "$dir/.cache" 2>/dev/null || true

/usr/bin/python3 - "$dir" <<'PY'
import csv, json, os, sys

d = sys.argv[1]
vendors = ["apple", "google", "twitter", "facebook"]
meta = {v: json.load(open(os.path.join(d, f"emoji-{v}.json"), encoding="utf-8")) for v in vendors}
ref = sorted(meta["apple"], key=lambda e: e["sort_order"])
by_unified = {v: {e["unified"]: e for e in meta[v]} for v in vendors}


def caption(e):
    n = e.get("name") or (e.get("short_name") or "").replace("_", " ")
    return n.lower()


def images(e, v, variants):
    """Relative paths of e's images for vendor v that exist and are flagged."""
    e = by_unified[v].get(e["unified"])
    if e is None:
        return []
    out = []
    cands = [e] + (list(e.get("skin_variations", {}).values()) if variants else [])
    for x in cands:
        rel = f"img/{v}/64/{x['image']}"
        if x.get(f"has_img_{v}") and os.path.isfile(os.path.join(d, rel)):
            out.append(rel)
    return out


def write(name, header, rows):
    with open(os.path.join(d, name), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


unseen = [e for e in ref if e["sort_order"] % 5 == 0]
seen = [e for e in ref if e["sort_order"] % 5 != 0]
train = [(p, caption(e)) for e in seen for v in ("apple", "google", "facebook") for p in images(e, v, True)]
val = [(p, caption(e)) for e in seen for p in images(e, "twitter", False)]
# unseen labels: one class per distinct caption, in sort order
names = []
for e in unseen:
    if any(images(e, v, False) for v in vendors) and caption(e) not in names:
        names.append(caption(e))
un = [(p, names.index(caption(e))) for e in unseen for v in vendors for p in images(e, v, False)]
cats = []
for e in ref:
    if e["category"] != "Component" and e["category"] not in cats:
        cats.append(e["category"])
catrows = [(p, cats.index(e["category"])) for e in ref if e["category"] != "Component"
           for v in vendors for p in images(e, v, False)]
write("train.tsv", ["filepath", "title"], train)
write("val_twitter.tsv", ["filepath", "title"], val)
write("unseen.tsv", ["filepath", "label"], un)
write("categories.tsv", ["filepath", "label"], catrows)
with open(os.path.join(d, "unseen_classnames.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(names) + "\n")
with open(os.path.join(d, "category_classnames.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(c.lower() for c in cats) + "\n")
print(f"get-emoji: {d}: train {len(train)}, val_twitter {len(val)}, unseen {len(un)} ({len(names)} classes), "
      f"categories {len(catrows)} ({len(cats)} classes)", file=sys.stderr)
PY
