"""Français : ce que Heisenberg entend et dit en français (``language = "fr"``)."""

from heisenberg.lang import Language, words

LANGUAGE = Language(
    code="fr",
    personalities={
        "default": ("Tu es Heisenberg, un assistant vocal serviable qui fonctionne en local. "
                    "Réponds en français, en quelques phrases courtes faites pour être dites "
                    "à voix haute."),
        "concise": ("Tu es Heisenberg, un assistant vocal. Réponds en français, en une seule "
                    "phrase courte, sans préambule."),
        "friendly": ("Tu es Heisenberg, un assistant vocal chaleureux et amical. Réponds en "
                     "français, avec gentillesse, en quelques phrases courtes."),
        "technical": ("Tu es Heisenberg, un assistant technique précis. Réponds en français, "
                      "de façon exacte et factuelle, avec les nombres et les unités qui "
                      "comptent."),
        "playful": ("Tu es Heisenberg, un assistant vocal espiègle, avec un brin d'humour. "
                    "Réponds en français, court et drôle."),
    },
    scene=("L'utilisateur t'a montré une image il y a un instant. Ce que tu y as vu : "
           "{description}"),
    sorry="Désolé, quelque chose s'est mal passé.",
    no_answer="Désolé, je n'ai pas de réponse à ça.",
    link="un lien",
    dismissals=frozenset({
        "stop", "arrête", "arrête toi", "arrêtez", "tais toi", "taisez vous", "silence",
        "annule", "annuler", "laisse tomber", "laissez tomber", "oublie", "oublie ça",
        "c'est tout", "ça suffit", "rien", "pas grave", "ce n'est rien"}),
    polite=frozenset({"s'il", "te", "vous", "plaît", "plait", "merci", "ok", "okay",
                      "d'accord", "bon", "euh", "maintenant", "oh"}),
    # Laissés de côté exprès : les pronoms compléments (le, la, les, lui, en, y : « dis-le »,
    # « vas-y ») et les verbes.
    not_last=words("""
        un une des du de d' au aux à mon ma mes ton ta tes son sa ses notre nos votre vos
        leur leurs ce cet cette ces quelques chaque aucun aucune
        pour avec sans sur sous dans par vers chez entre contre depuis pendant
        et ou mais car donc ni que qu' si quand lorsque comme parce puisque
        je tu il elle on nous ils elles j' c'est
        quel quelle quels quelles où comment pourquoi combien qui
        très plus moins vraiment euh hum"""),
    may_end=words("il elle on nous ils elles c'est plus moins"),
    # French leaves no preposition at the end of a question.
    stranded=frozenset(),
    strands_after=frozenset(),
    short_end=words("qui où comment pourquoi combien quel quelle quels quelles"),
    subordinate=words("si quand lorsque avant après parce puisque comme bien dès"),
    phrase_starts=words("est sont était étaient sera et mais ou parce qui où quand lorsque"),
    phrase_not_after=words("ce cela ça ceci vous nous le la les lui leur y en me te se il"),
    abbreviations=words("""
        mme mmes mlle mlles mm dr pr st ste etc env cf av apr hab éd fig
        janv févr avr juil oct nov déc"""),
    skills={
        "time": "Il est {hour} {hour_unit} {minute}.",
        "time_on_the_hour": "Il est {hour} {hour_unit}.",
        "date": "Nous sommes le {weekday} {day} {month} {year}.",
        "day_names": {1: "1er"},
        "weekdays": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
        "months": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                   "septembre", "octobre", "novembre", "décembre"),
        # Ce qu'on dit à un assistant de bureau et que les modèles de Home Assistant n'ont
        # pas (syntaxe de hassil : [facultatif], (l'un|l'autre)).
        "sentences": {
            "HassGetCurrentTime": ["(tu as|vous avez|t'as) l'heure",
                                   "(dis|donne|dites|donnez)[-| ](moi|nous) l'heure",
                                   "c'est quoi l'heure", "quelle heure il est"],
            "HassGetCurrentDate": ["on est quel jour", "quel jour on est[ aujourd'hui]",
                                   "(dis|donne)[-| ]moi la date"],
            "HassStartTimer": [
                "(<regle>|<demarre>|<cree>|programme) [un|le|mon] <minuteur> [{timer_name:name}] "
                "(de|pour|sur) {timer_minutes:minutes} <minute_unit>",
                "(<regle>|<demarre>|<cree>|programme) [un|le|mon] <minuteur> [{timer_name:name}] "
                "(de|pour|sur) {timer_seconds:seconds} <second_unit>",
                "(<regle>|<demarre>|<cree>|programme) [un|le|mon] <minuteur> [{timer_name:name}] "
                "(de|pour|sur) {timer_hours:hours} <hour_unit>",
                "(<regle>|<demarre>|<cree>|programme) [un|le|mon] <minuteur> (de|pour|sur) "
                "{timer_hours:hours} <hour_unit> [et] {timer_minutes:minutes} <minute_unit>"],
            "HassCancelTimer": ["(annule|arrête|supprime|stoppe) [le|mon] <minuteur> "
                                "{timer_name:name}"],
            "HassTimerStatus": ["combien de temps (reste-t-il|reste t il|il reste) (sur|au|"
                                "dans) [le|mon] <minuteur> {timer_name:name}"],
        },
        "fillers": ("dis", "dites", "euh", "bon", "alors", "ok", "okay", "eh", "hé", "hey"),
        # Avant la reconnaissance : les durées que les modèles ne prennent qu'en chiffres.
        "rewrites": ((r"\bd'une heure et demie\b", "de 1 heure et 30 minutes"),
                     (r"\bd'une (heure|minute|seconde)\b", r"de 1 \1"),
                     (r"\bune heure et demie\b", "1 heure et 30 minutes"),
                     (r"\bune demi-heure\b", "30 minutes"),
                     (r"\bun quart d'heure\b", "15 minutes"),
                     (r"\b(une) (heure|minute|seconde)\b", r"1 \2")),
        "units": {"hour": ("heure", "heures"), "minute": ("minute", "minutes"),
                  "second": ("seconde", "secondes")},
        "and": "et",
        "adjective_units": False,
        "timer_errors": {
            "range": "un minuteur dure de 1 seconde à 100 heures",
            "name": "le nom d'un minuteur a au plus 60 caractères",
            "too_many": "il y a déjà 20 minuteurs",
            "not_paused": "ce minuteur n'est pas en pause",
            "not_running": "ce minuteur n'est pas en marche",
            "ended": "ce minuteur est déjà terminé",
            "too_short": "il resterait moins d'une seconde",
            "too_long": "un minuteur ne peut pas dépasser 100 heures",
        },
        "timer": {
            "named": "minuteur {name}",
            "of": "minuteur de {duration}",
            "for": "minuteur de {duration}",
            "set": "Minuteur réglé sur {duration}.",
            "set_named": "Minuteur {name} réglé sur {duration}.",
            "done": "Votre {label} est terminé.",
            "cancelled": "J'ai annulé votre {label}.",
            "cancelled_one": "J'ai annulé 1 minuteur.",
            "cancelled_all": "J'ai annulé {count} minuteurs.",
            "none": "Il n'y a aucun minuteur.",
            "no_such": "Il n'y a pas de {label}.",
            "which": "Vous avez {count} minuteurs : {labels}. Lequel ?",
            "the": "le {label}",
            "left": "Il reste {left} sur votre {label}.",
            "paused_left": "Votre {label} est en pause, il reste {left}.",
            "many_left": "Vous avez {count} minuteurs : {items}.",
            "item": "le {label}, encore {left}",
            "paused": "J'ai mis votre {label} en pause.",
            "resumed": "J'ai relancé votre {label}.",
            "changed": "Il reste maintenant {left} sur votre {label}.",
            "failed": "Je n'ai pas pu le faire : {why}.",
        },
    },
)
