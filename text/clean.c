// CLIP text cleaning (NFC, html.unescape twice, whitespace collapse, Python
// str.lower()) and the pre-tokenisation regex as a code-point scanner. Every
// rule here reproduces a Python behaviour; the comments say which.
#include "text/text_internal.h"
#include "text/html_entities.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void vlm_text_scratch_free(vlm_text_scratch *s) {
    if (!s) return;
    free(s->u8);
    free(s->a);
    free(s->b);
    memset(s, 0, sizeof *s);
}

static int grow_u8(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    uint8_t *q = realloc(*p, c);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int grow_i32(int32_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    int32_t *q = realloc(*p, c * sizeof *q);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

// ---------------------------------------------------------------- UTF-8

size_t vlm_text_utf8_sanitize(const uint8_t *s, size_t len, uint8_t *d, int *ascii) {
    size_t i = 0, o = 0;
    int asc = 1;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            d[o++] = c;
            i++;
            continue;
        }
        asc = 0;
        // Lead byte -> number of continuation bytes and the allowed range of
        // the first one (excludes overlongs, surrogates, > U+10FFFF), as in
        // Python's decoder, which replaces each maximal ill-formed prefix.
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        size_t k = 1;
        while (need && k <= need && i + k < len) {
            uint8_t b = s[i + k];
            uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (b < l || b > h) break;
            k++;
        }
        if (need && k == need + 1) {
            memcpy(d + o, s + i, k);
            o += k;
        } else {
            d[o++] = 0xEF, d[o++] = 0xBF, d[o++] = 0xBD;
        }
        i += k;
    }
    if (ascii) *ascii = asc;
    return o;
}

size_t vlm_text_utf8_decode1(const uint8_t *s, size_t len, int32_t *cp) {
    if (!len) return 0;
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    int32_t v;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, v = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, v = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (len < need + 1) return 0;
    for (size_t k = 1; k <= need; k++) {
        uint8_t b = s[k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need + 1;
}

size_t vlm_text_utf8_encode(const int32_t *cp, size_t n, uint8_t *d) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)cp[i];
        if (c < 0x80) {
            d[o++] = (uint8_t)c;
        } else if (c < 0x800) {
            d[o++] = (uint8_t)(0xC0 | (c >> 6));
            d[o++] = (uint8_t)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            d[o++] = (uint8_t)(0xE0 | (c >> 12));
            d[o++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            d[o++] = (uint8_t)(0x80 | (c & 0x3F));
        } else {
            d[o++] = (uint8_t)(0xF0 | (c >> 18));
            d[o++] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
            d[o++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            d[o++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return o;
}

// ------------------------------------------------------- byte alphabet

static int printable_byte(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

int32_t vlm_text_byte_to_unicode(uint8_t b) {
    if (printable_byte(b)) return b;
    // n-th non-printable byte (in byte order) -> U+0100 + n.
    int n = b <= 0x20 ? b : b <= 0xA0 ? 0x21 + (b - 0x7F) : 0x21 + 0x22;
    return 0x100 + n;
}

int vlm_text_unicode_to_byte(int32_t cp) {
    if (cp >= 0 && cp < 0x100) return printable_byte((unsigned)cp) ? cp : -1;
    if (cp < 0x100 || cp >= 0x100 + 68) return -1;
    int n = cp - 0x100;
    if (n <= 0x20) return n;
    if (n <= 0x21 + 0x21) return 0x7F + (n - 0x21);
    return 0xAD;
}

int vlm_text_byte_rank(uint8_t b) {
    // bs = [0x21..0x7E] + [0xA1..0xAC] + [0xAE..0xFF] (188 bytes), then the
    // 68 others in byte order.
    if (b >= 0x21 && b <= 0x7E) return b - 0x21;
    if (b >= 0xA1 && b <= 0xAC) return 94 + (b - 0xA1);
    if (b >= 0xAE) return 106 + (b - 0xAE);
    return 188 + (vlm_text_byte_to_unicode(b) - 0x100);
}

// ------------------------------------------------------- character classes

// regex module's \s (Unicode White_Space), used by whitespace_clean and the
// pre-tokeniser.
static int re_space(int32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || c == 0x20;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python str.isspace() (used by str.strip()): \s plus U+001C..U+001F.
static int py_space(int32_t c) {
    return re_space(c) || (c >= 0x1C && c <= 0x1F);
}

static int is_letter_cat(utf8proc_category_t k) {
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

// Unicode Cased property: utf8proc has no flag for it; letters with a case
// mapping plus the Other_Lowercase/Other_Uppercase characters that have
// neither a mapping nor an Lu/Ll/Lt category (checked against CPython over
// all code points; Lm/Mn ones are Case_Ignorable, where Cased never matters).
static int is_cased(int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 1;
    if (utf8proc_tolower(c) != c || utf8proc_toupper(c) != c || utf8proc_totitle(c) != c) return 1;
    return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
           (c >= 0x1F170 && c <= 0x1F189);
}

// Unicode Case_Ignorable: Mn Me Cf Lm Sk, plus Word_Break MidLetter,
// MidNumLet and Single_Quote.
static int is_case_ignorable(int32_t c) {
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018:
    case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07:
    case 0xFF0E: case 0xFF1A:
        return 1;
    }
    if (c < 0x80) return 0;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

// ----------------------------------------------------------------- NFC

static int ccc(int32_t c) {
    return c < 0x300 ? 0 : utf8proc_get_property(c)->combining_class;
}

// Canonical ordering: a stable sort of every run of non-starters by
// combining class. utf8proc_decompose's own gnome sort is quadratic, which a
// long run of alternating marks would turn into a hang.
static void canonical_order(int32_t *a, size_t n, int32_t *tmp) {
    size_t i = 0;
    while (i < n) {
        if (!ccc(a[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && ccc(a[j])) j++;
        size_t len = j - i;
        if (len <= 32) {
            for (size_t p = i + 1; p < j; p++) {
                int32_t v = a[p];
                int cv = ccc(v);
                size_t q = p;
                while (q > i && ccc(a[q - 1]) > cv) {
                    a[q] = a[q - 1];
                    q--;
                }
                a[q] = v;
            }
        } else {
            size_t count[257] = {0};
            for (size_t p = i; p < j; p++) count[ccc(a[p]) + 1]++;
            for (int k = 1; k < 257; k++) count[k] += count[k - 1];
            for (size_t p = i; p < j; p++) tmp[count[ccc(a[p])]++] = a[p];
            memcpy(a + i, tmp, len * sizeof *a);
        }
        i = j;
    }
}

// Valid UTF-8 u[0..m) -> NFC code points in s->a.
static vlm_status nfc(vlm_text_scratch *s, const uint8_t *u, size_t m, size_t *n_out, vlm_error *err) {
    if (!grow_i32(&s->a, &s->a_cap, m + 64)) return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
    size_t o = 0, i = 0;
    while (i < m) {
        int32_t c;
        size_t k = vlm_text_utf8_decode1(u + i, m - i, &c);
        if (!k) return vlm_errorf(err, VLM_ERR_STATE, "text: internal UTF-8 error"); // sanitised input
        i += k;
        if (s->a_cap - o < 32 && !grow_i32(&s->a, &s->a_cap, o + 64))
            return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
        if (c < 0xC0) {
            s->a[o++] = c; // nothing below U+00C0 decomposes
            continue;
        }
        int bound = 0;
        utf8proc_ssize_t r;
        for (;;) {
            r = utf8proc_decompose_char(c, s->a + o, (utf8proc_ssize_t)(s->a_cap - o),
                                        UTF8PROC_STABLE | UTF8PROC_COMPOSE, &bound);
            if (r < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "text: %s", utf8proc_errmsg(r));
            if ((size_t)r <= s->a_cap - o) break;
            if (!grow_i32(&s->a, &s->a_cap, o + (size_t)r)) return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
        }
        o += (size_t)r;
    }
    if (!grow_i32(&s->b, &s->b_cap, o + 1)) return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
    canonical_order(s->a, o, s->b);
    utf8proc_ssize_t r = utf8proc_normalize_utf32(s->a, (utf8proc_ssize_t)o, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "text: %s", utf8proc_errmsg(r));
    *n_out = (size_t)r;
    return VLM_OK;
}

// ------------------------------------------------------- html.unescape

// name[0..len) may hold any byte (even NUL), so compare by length, not strcmp.
static const char *entity_lookup(const char *name, size_t len) {
    size_t lo = 0, hi = sizeof vlm_html_entities / sizeof vlm_html_entities[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *e = vlm_html_entities[mid].name;
        size_t elen = strlen(e);
        int c = memcmp(e, name, elen < len ? elen : len);
        if (!c) c = elen < len ? -1 : elen > len ? 1 : 0;
        if (!c) return vlm_html_entities[mid].value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static size_t emit_utf8_value(const char *v, int32_t *d) {
    size_t o = 0, len = strlen(v), i = 0;
    while (i < len) {
        int32_t c;
        size_t k = vlm_text_utf8_decode1((const uint8_t *)v + i, len - i, &c);
        if (!k) break; // generated table is valid UTF-8
        d[o++] = c;
        i += k;
    }
    return o;
}

// Python's html._replace_charref for a numeric reference.
static size_t emit_charref(uint32_t num, int overflow, int32_t *d) {
    if (!overflow) {
        for (size_t k = 0; k < sizeof vlm_html_charref_fixes / sizeof vlm_html_charref_fixes[0]; k++)
            if (vlm_html_charref_fixes[k].num == num) {
                d[0] = (int32_t)vlm_html_charref_fixes[k].cp;
                return 1;
            }
    }
    if (overflow || num > 0x10FFFF || (num >= 0xD800 && num <= 0xDFFF)) {
        d[0] = 0xFFFD;
        return 1;
    }
    for (size_t k = 0; k < sizeof vlm_html_invalid_codepoints / sizeof vlm_html_invalid_codepoints[0]; k++)
        if (vlm_html_invalid_codepoints[k] == num) return 0;
    d[0] = (int32_t)num;
    return 1;
}

static int hexval(int32_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// html.unescape: re.sub(r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)',
// _replace_charref, s). The output is never longer than the input.
static size_t html_unescape(const int32_t *s, size_t n, int32_t *d) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (s[i] != '&') {
            d[o++] = s[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            size_t k = j + 1;
            int hex = k < n && (s[k] == 'x' || s[k] == 'X');
            if (hex) k++;
            size_t ds = k;
            uint32_t num = 0;
            int overflow = 0;
            for (; k < n; k++) {
                int v = hex ? hexval(s[k]) : (s[k] >= '0' && s[k] <= '9' ? s[k] - '0' : -1);
                if (v < 0) break;
                if (!overflow) {
                    num = num * (hex ? 16 : 10) + (uint32_t)v;
                    if (num > 0x10FFFF) overflow = 1; // saturate: only "> 0x10FFFF" matters
                }
            }
            if (k == ds) { // "&#" not followed by a number: no match at this '&'
                d[o++] = s[i++];
                continue;
            }
            if (k < n && s[k] == ';') k++;
            o += emit_charref(num, overflow, d + o);
            i = k;
            continue;
        }
        size_t k = j;
        while (k < n && k - j < 32) {
            int32_t c = s[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
                break;
            k++;
        }
        if (k == j) {
            d[o++] = s[i++];
            continue;
        }
        if (k < n && s[k] == ';') k++;
        // s[j..k) is the match; names are ASCII, so only its ASCII prefix can hit.
        char name[VLM_HTML_ENTITY_MAXNAME + 2];
        size_t len = k - j, asc = 0;
        while (asc < len && asc < sizeof name && s[j + asc] < 0x80) {
            name[asc] = (char)s[j + asc];
            asc++;
        }
        const char *v = asc == len ? entity_lookup(name, len) : NULL;
        size_t x = len;
        if (!v) {
            // Longest prefix (at least 2 characters) that is an entity.
            for (x = (len - 1 < asc ? len - 1 : asc); x >= 2; x--)
                if ((v = entity_lookup(name, x))) break;
        }
        if (v) {
            o += emit_utf8_value(v, d + o);
            for (size_t p = j + x; p < k; p++) d[o++] = s[p];
        } else {
            for (size_t p = i; p < k; p++) d[o++] = s[p];
        }
        i = k;
    }
    return o;
}

static int has_amp(const int32_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == '&') return 1;
    return 0;
}

// ------------------------------------------------------------- lower()

// Python's Final_Sigma rule: \p{cased}\p{case-ignorable}* U+03A3
// !(\p{case-ignorable}* \p{cased}).
static int final_sigma(const int32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) j--;
    if (j == 0 || !is_cased(s[j - 1])) return 0;
    j = i + 1;
    while (j < n && is_case_ignorable(s[j])) j++;
    return j == n || !is_cased(s[j]);
}

// Python str.lower(): simple lowercase mapping plus the only unconditional
// SpecialCasing entry (U+0130 -> "i\u0307") and Final_Sigma. d needs 2n.
static size_t py_lower(const int32_t *s, size_t n, int32_t *d) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = s[i];
        if (c < 0x80) {
            d[o++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            d[o++] = 'i';
            d[o++] = 0x307;
        } else if (c == 0x3A3) {
            d[o++] = final_sigma(s, n, i) ? 0x3C2 : 0x3C3;
        } else {
            d[o++] = utf8proc_tolower(c);
        }
    }
    return o;
}

// ------------------------------------------------------------- clean()

vlm_status vlm_text_clean(vlm_text_scratch *s, const char *text, size_t len, const int32_t **out, size_t *n_out,
                          vlm_error *err) {
    if (!text && len) return vlm_errorf(err, VLM_ERR_ARG, "text: NULL text");
    if (len > VLM_TEXT_MAX_BYTES)
        return vlm_errorf(err, VLM_ERR_ARG, "text: %zu bytes is over the %zu-byte limit", len, VLM_TEXT_MAX_BYTES);
    if (!grow_u8(&s->u8, &s->u8_cap, 3 * len + 1)) return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
    int ascii;
    size_t m = vlm_text_utf8_sanitize((const uint8_t *)text, len, s->u8, &ascii);

    // 1. ftfy.fix_text ~ NFC (ASCII is already NFC).
    size_t n = 0;
    if (ascii) {
        if (!grow_i32(&s->a, &s->a_cap, m + 1)) return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
        for (size_t i = 0; i < m; i++) s->a[i] = s->u8[i];
        n = m;
    } else {
        vlm_status st = nfc(s, s->u8, m, &n, err);
        if (st) return st;
    }
    // b must hold the lowercased text (<= 2n) and every step below.
    if (!grow_i32(&s->b, &s->b_cap, 2 * n + 1) || !grow_i32(&s->a, &s->a_cap, 2 * n + 1))
        return vlm_errorf(err, VLM_ERR_OOM, "text: out of memory");
    int32_t *cur = s->a, *oth = s->b;

    // 2. html.unescape(html.unescape(text)).
    for (int pass = 0; pass < 2; pass++) {
        if (!has_amp(cur, n)) break;
        n = html_unescape(cur, n, oth);
        int32_t *t = cur;
        cur = oth;
        oth = t;
    }

    // 3. .strip(), then re.sub(r'\s+', ' ', text).strip(): after the first
    // strip both ends are non-space, so the second strip has nothing to do.
    size_t b = 0, e = n;
    while (b < e && py_space(cur[b])) b++;
    while (e > b && py_space(cur[e - 1])) e--;
    size_t o = 0;
    int in_space = 0;
    for (size_t i = b; i < e; i++) {
        if (re_space(cur[i])) {
            if (!in_space) oth[o++] = ' ';
            in_space = 1;
        } else {
            oth[o++] = cur[i];
            in_space = 0;
        }
    }
    n = o;

    // 4. .lower()
    n = py_lower(oth, n, cur);
    *out = cur;
    *n_out = n;
    return VLM_OK;
}

// --------------------------------------------------------- pre-tokeniser

enum { CLS_SKIP, CLS_L, CLS_N, CLS_P };

// Which branch of the regex a character can start: [\p{L}]+, [\p{N}],
// [^\s\p{L}\p{N}]+, or none (\s). Under IGNORECASE the regex module treats
// U+0345 (Mn, folds to Greek iota) as neither a letter nor a "[^...L...]"
// character, so findall skips it like whitespace.
static int char_class(int32_t c) {
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CLS_L;
        if (c >= '0' && c <= '9') return CLS_N;
        return re_space(c) ? CLS_SKIP : CLS_P;
    }
    if (re_space(c) || c == 0x345) return CLS_SKIP;
    utf8proc_category_t k = utf8proc_category(c);
    if (is_letter_cat(k)) return CLS_L;
    if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) return CLS_N;
    return CLS_P;
}

// Case-insensitive equality with an ASCII lowercase literal character, as
// the regex module's simple case folding does it: only 's' has a non-ASCII
// variant (U+017F LATIN SMALL LETTER LONG S).
static int ieq(int32_t c, char lit) {
    if (c == lit) return 1;
    if (lit >= 'a' && lit <= 'z' && c == lit - 32) return 1;
    return lit == 's' && c == 0x17F;
}

static size_t match_lit(const int32_t *cp, size_t n, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || !ieq(cp[i + k], lit[k])) return 0;
    return k;
}

int vlm_text_pretok_next(const int32_t *cp, size_t n, size_t *pos, size_t *start, size_t *end) {
    size_t i = *pos;
    while (i < n) {
        int32_t c = cp[i];
        size_t m = 0;
        if (c == '<') {
            if (!(m = match_lit(cp, n, i, VLM_TEXT_SOT))) m = match_lit(cp, n, i, VLM_TEXT_EOT);
        } else if (c == '\'' && i + 1 < n) {
            // 's|'t|'re|'ve|'m|'ll|'d
            int32_t c1 = cp[i + 1];
            if (ieq(c1, 's') || ieq(c1, 't') || ieq(c1, 'm') || ieq(c1, 'd')) m = 2;
            else if (i + 2 < n && ((ieq(c1, 'r') && ieq(cp[i + 2], 'e')) || (ieq(c1, 'v') && ieq(cp[i + 2], 'e')) ||
                                   (ieq(c1, 'l') && ieq(cp[i + 2], 'l'))))
                m = 3;
        }
        if (m) {
            *start = i;
            *end = *pos = i + m;
            return 1;
        }
        int k = char_class(c);
        if (k == CLS_SKIP) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (k != CLS_N)
            while (j < n && char_class(cp[j]) == k) j++;
        *start = i;
        *end = *pos = j;
        return 1;
    }
    *pos = n;
    return 0;
}
