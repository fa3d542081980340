"""Names people read to decide: model groups, API keys and the owners four-eyes compares.

An approver tells two names apart by reading them, so a name must look like what it is: no control or invisible
characters, no space but the ASCII one and none around the name, Unicode's composed form (NFC), and one script
(UTS #39's highly restrictive level). Owners are also compared by a looser key (`person_key`), so two spellings
a reader cannot tell apart ("t-publisher" and "t‐publisher" with U+2010) count as one person.
"""

from __future__ import annotations

import hashlib
import unicodedata

import unicodedataplus

# Characters that render as nothing or reorder text (zero-width, bidi overrides, line separators, unassigned and
# private-use code points): in a name they let "fraud_model" and a look-alike read the same to an approver.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def readable_problem(name: str) -> str | None:
    """Why ``name`` could pass for another name to its reader, or None."""
    if not name.strip():
        return "must not be blank"
    for ch in name:
        if unicodedata.category(ch) in _INVISIBLE or (ch.isspace() and ch != " "):
            return f"must not contain control, invisible or non-ASCII space characters (found U+{ord(ch):04X})"
    if name != name.strip():
        return "must not start or end with whitespace"
    if unicodedata.normalize("NFC", name) != name:
        return f"must be in Unicode's composed form (NFC): send {unicodedata.normalize('NFC', name)!r}"
    return _mixed_scripts_problem(name)


def _dashes_and_spaces(text: str) -> str:
    """Every dash (Unicode's Pd: hyphen, en dash, minus-like) as '-', runs of spaces as one."""
    folded = "".join("-" if unicodedata.category(ch) == "Pd" or ch == "\u2212" else ch for ch in text)
    return " ".join(folded.split())


def reading_key(name: str) -> str:
    """What two names share when a reader cannot tell them apart in print: compatibility-folded (NFKC: full-width
    letters, ligatures, mathematical letters), dashes and spaces as `_dashes_and_spaces`. Case is kept: model
    names that differ in case are distinct (MLflow's are)."""
    return _dashes_and_spaces(unicodedata.normalize("NFKC", name))


def stored_reading_key(name: str) -> str:
    """`reading_key` as a fixed-width digest, for a unique index: NFKC can make a name up to 18 times longer,
    past what a B-tree entry holds."""
    return hashlib.sha256(reading_key(name).encode()).hexdigest()


def person_key(name: str) -> str:
    """What two owner spellings must share to be one person: compatibility-folded first, then case-folded (the
    other order leaves "𝐓est" unlike "test"), dashes and spaces as `reading_key` folds them."""
    return _dashes_and_spaces(unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()))


# Unicode's identifier restriction levels (UTS #39 §5): a name that mixes scripts ("frаud_model" with a Cyrillic
# "а") can be written to pass for another one to the reader. "Highly Restrictive": every letter from one script,
# or Latin together with the scripts Chinese, Japanese and Korean are written in. Script_Extensions sets, with Han,
# Hiragana, Katakana, Hangul and Bopomofo augmented by the writing systems that combine them (§5.1); Common and
# Inherited characters (digits, punctuation, marks) go with any script. A name wholly in another script that reads
# like a Latin one ("сосо", all Cyrillic) passes: telling those apart needs Unicode's confusables skeletons, which
# this rule does not compare.
_ANY_SCRIPT = frozenset({"Zyyy", "Zinh"})
_AUGMENTED = {"Hani": {"Hanb", "Jpan", "Kore"}, "Hira": {"Jpan"}, "Kana": {"Jpan"}, "Hang": {"Kore"},
              "Bopo": {"Hanb"}}
_WITH_LATIN = (frozenset({"Latn", "Hani", "Hira", "Kana"}), frozenset({"Latn", "Hani", "Bopo"}),
               frozenset({"Latn", "Hani", "Hang"}))


def _script_set(ch: str) -> frozenset[str] | None:
    scx = frozenset(unicodedataplus.script_extensions(ch))
    return None if scx & _ANY_SCRIPT else scx


def _mixed_scripts_problem(name: str) -> str | None:
    if name.isascii():     # ASCII letters are all Latin; the rest is Common
        return None
    sets = {ch: s for ch in dict.fromkeys(name) if (s := _script_set(ch)) is not None}
    if not sets:
        return None
    augmented = [s.union(*(_AUGMENTED.get(x, ()) for x in s)) for s in sets.values()]
    if frozenset.intersection(*augmented) or any(all(s & allowed for s in sets.values()) for allowed in _WITH_LATIN):
        return None
    by_script: dict[str, list[str]] = {}
    for ch in name:
        if ch in sets:
            by_script.setdefault(unicodedataplus.script(ch), []).append(ch)
    main, *others = sorted(by_script, key=lambda k: -len(by_script[k]))
    odd = [f"{ch!r} (U+{ord(ch):04X}, {script})" for script in others for ch in dict.fromkeys(by_script[script])]
    found = ", ".join(odd[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    return (f"must not mix scripts: {main} letters with {found}; a mixed name can pass for another one to its "
            "reader (Unicode's highly restrictive identifier level, UTS #39): write it in one script")
