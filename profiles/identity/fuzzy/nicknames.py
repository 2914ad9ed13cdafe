"""Common English given names and their nicknames, so that Robert and Bob compare as one name.

Each line is one group of names used for the same person. A name may sit in several groups (Chris is
Christopher, Christine or Christina), so two names are equivalent when their groups intersect.
Diminutives that only shorten the name (Alex, Sam) are also caught by the prefix rule in
``compare.py``; they are listed anyway so that blocking on the group finds them.
"""

from __future__ import annotations

from functools import lru_cache

_GROUPS = """
abigail abby abbie gail
abraham abe bram
alexander alex alec alick sandy xander lex
alexandra alex alexa sandra sandy lexi lexie
alfred alf alfie fred freddie
allison alison ali allie
amanda mandy manda
andrew andy drew
angela angie
anne ann annie anna nan nancy hannah
anthony tony ant
arthur art artie
barbara barb babs barbie
benjamin ben benny benji
bernard bernie
beverly bev
bradley brad
bridget biddy bridie
caroline carol carrie caro lina
catherine cathy cath kate katie kat cat
charles charlie chuck chas chaz carl
charlotte lottie charlie lotte
christina chris tina christine chrissy kristina kristin
christopher chris kit topher
clifford cliff
cynthia cindy
daniel dan danny
david dave davy
deborah debbie deb debra
dennis denny
dominic dom
donald don donnie
dorothy dot dottie dolly
douglas doug
edward ed eddie ted teddy ned
eleanor ellie nora ella nell
elizabeth liz lizzie beth betty bess bessie eliza libby lisa elisa elise
emily em emmy millie
emma em emmie
eugene gene
frances fran fanny frankie
francis frank frankie
frederick fred freddie freddy rick
gabriel gabe
gabrielle gabby gabi
geoffrey geoff jeff
gerald gerry jerry
gregory greg
harold harry hal
henry harry hank hal
howard howie
isabella isabel isabelle bella izzy
jacob jake jakob
jacqueline jackie jacqui
james jim jimmy jamie jem
janet jan jenny
jennifer jenny jen jenna
jessica jess jessie
joanna jo joanne joan
john jack johnny jon
jonathan jon jonny nathan
joseph joe joey jo
josephine jo josie
joshua josh
judith judy jude
julia julie jules
katherine kate katie kathy kat kath kay katharine kathryn catherine kit
kenneth ken kenny
lawrence larry laurie lawrie
leonard len lenny leo
louis lou lewis
louise lou lulu
lucinda lucy cindy
madeleine maddie madeline madison
margaret peggy maggie meg marge margie greta daisy
matilda tilly tilda maud
matthew matt matty
melissa mel missy
michael mike mick mikey mickey
michelle shelley chelle
nathaniel nate nat nathan
nicholas nick nicky nico
nicola nicky nikki
oliver ollie olly
pamela pam
patricia pat patty trish tricia
patrick pat paddy rick
penelope penny
peter pete
philip phil pip
rebecca becky becca
richard rich rick ricky dick richie
robert rob bob bobby robbie bert
roberta bobbie robbie
ronald ron ronnie
rosemary rose rosie
samantha sam sammy
samuel sam sammy
sarah sara sally sadie
stephanie steph stevie
stephen steve stevie steven
stuart stu
susan sue susie suzanne
terence terry
theodore theo ted teddy
theresa teresa terry tess tessa
thomas tom tommy thom
timothy tim timmy
valerie val
victoria vicky tori vic
vincent vince vinny
walter walt wally
william will bill billy willie liam
zachary zach zack
"""


@lru_cache(maxsize=1)
def _index() -> dict[str, frozenset[int]]:
    index: dict[str, set[int]] = {}
    for number, line in enumerate(line for line in _GROUPS.strip().splitlines() if line.strip()):
        for name in line.split():
            index.setdefault(name, set()).add(number)
    return {name: frozenset(groups) for name, groups in index.items()}


def nickname_groups(name: str) -> frozenset[int]:
    """The groups a (normalised, lower-case) given name belongs to; empty when it is in none."""
    return _index().get(name, frozenset())


def nickname_canonical(name: str) -> str:
    """One stable key per name for blocking: the smallest group it belongs to, else the name itself."""
    groups = _index().get(name)
    return f"g{min(groups)}" if groups else name


def same_person_names(a: str, b: str) -> bool:
    """Whether two given names can be the same person's (equal, or nicknames of one name)."""
    if a == b:
        return True
    ga, gb = _index().get(a), _index().get(b)
    return bool(ga and gb and ga & gb)


@lru_cache(maxsize=4096)
def nickname_variants(name: str) -> frozenset[str]:
    """Every name sharing a group with ``name`` (itself included)."""
    groups = _index().get(name)
    if not groups:
        return frozenset({name})
    return frozenset(other for other, theirs in _index().items() if theirs & groups) | {name}
