"""English: what Heisenberg hears and says in English (the default)."""

from heisenberg.lang import Language, words

LANGUAGE = Language(
    code="en",
    personalities={
        "default": ("You are Heisenberg, a helpful voice assistant running locally. "
                    "Answer in a few short spoken sentences."),
        "concise": ("You are Heisenberg, a voice assistant. Answer in one short sentence, "
                    "with no preamble."),
        "friendly": ("You are Heisenberg, a warm and friendly voice assistant. Answer kindly "
                     "in a few short sentences."),
        "technical": ("You are Heisenberg, a precise technical assistant. Give exact, factual "
                      "answers with numbers and units where they matter."),
        "playful": ("You are Heisenberg, a playful voice assistant with a light sense of "
                    "humour. Keep answers short and fun."),
    },
    scene="The user showed you an image a moment ago. What you saw in it: {description}",
    sorry="Sorry, something went wrong.",
    no_answer="Sorry, I have no answer to that.",
    link="a link",
    dismissals=frozenset({
        "stop", "stop it", "stop talking", "cancel", "never mind", "nevermind", "forget it",
        "that's all", "that is all", "that's it", "quiet", "be quiet", "shut up", "enough"}),
    polite=frozenset({"please", "thanks", "thank", "you", "okay", "ok", "now", "just", "oh"}),
    # Left out on purpose: object pronouns (you, it, them: "ask what you can do for you"),
    # particles that end commands (on, off, up, over: "turn the lights on"), and verbs,
    # auxiliaries too ("tell me what colour the car is").
    not_last=words("""
        a an the my your his her its our their this these those some any every no
        of for to with from about into onto at by as than between through in
        and or but because so if when while although though unless whether nor
        i we they he she i'm you're we're they're let's
        what which who whose where how why
        very more most really just um uh er"""),
    may_end=words("this these those his her some any we they he she more most so"),
    stranded=words("of for to with from about into onto at by through in"),
    strands_after=words("what which who whom whose where"),
    short_end=words("what which who whose where how why"),
    subordinate=words("if when before after because while although though unless once since"),
    phrase_starts=words("is are was were and but or because which that who where when while"),
    phrase_not_after=words("it you me him us them there here that this what it's"),
    abbreviations=words("""
        mr mrs ms dr prof st jr sr vs etc approx dept est fig inc ltd co corp mt ft
        jan feb apr jun jul aug sep sept oct nov dec"""),
    skills={
        "time": "It's {hour12}:{minute:02d} {ampm}.",
        "date": "Today is {weekday}, {month} {day}, {year}.",
        "weekdays": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                     "Sunday"),
        "months": ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December"),
        # Said to a desk assistant and missing from Home Assistant's templates (hassil's
        # syntax: [optional], (one|other)).
        "sentences": {
            "HassGetCurrentTime": ["(do you know|can you tell me) what time it is"],
            "HassGetCurrentDate": ["what day is it [today]", "what day is today",
                                   "what is today"],
            "HassStartTimer": [
                "<timer_set> [a|an|the|my] {timer_name:name} timer for "
                "{timer_minutes:minutes}( |-)minute[s]",
                "<timer_set> [a|an|the|my] {timer_name:name} timer for "
                "{timer_seconds:seconds}( |-)second[s]",
                "<timer_set> [a|an|the|my] {timer_name:name} timer for "
                "{timer_hours:hours}( |-)hour[s]"],
            "HassTimerStatus": ["how (much time|long) is left", "(what's|what is) left on "
                                "[the|my] timer[s]", "(what's|what is) the status of [the|my] "
                                "timer[s]"],
        },
        "fillers": ("hey", "hi", "okay", "ok", "so", "um", "uh", "well", "oh"),
        # Said before matching: durations the templates only take as numbers.
        "rewrites": ((r"\bhalf an hour\b", "30 minutes"), (r"\ban hour and a half\b",
                      "1 hour and 30 minutes"), (r"\b(an|a) (hour|minute|second)\b", r"1 \2")),
        "units": {"hour": ("hour", "hours"), "minute": ("minute", "minutes"),
                  "second": ("second", "seconds")},
        "and": "and",
        "timer_errors": {
            "range": "a timer lasts from 1 second to 100 hours",
            "name": "a timer's name has at most 60 characters",
            "too_many": "there are already 20 timers",
            "not_paused": "that timer is not paused",
            "not_running": "that timer is not running",
            "ended": "that timer has already ended",
            "too_short": "that would leave less than a second",
            "too_long": "a timer cannot last over 100 hours",
        },
        "timer": {
            "named": "{name} timer",
            "of": "{duration} timer",  # duration: the unit in the singular ("5 minute")
            "for": "timer for {duration}",
            "set": "Timer set for {duration}.",
            "set_named": "{Name} timer set for {duration}.",
            "done": "Your {label} is done.",
            "cancelled": "Cancelled your {label}.",
            "cancelled_one": "Cancelled 1 timer.",
            "cancelled_all": "Cancelled {count} timers.",
            "none": "There are no timers.",
            "no_such": "There is no {label}.",
            "which": "You have {count} timers: {labels}. Which one?",
            "the": "the {label}",
            "left": "Your {label} has {left} left.",
            "paused_left": "Your {label} is paused with {left} left.",
            "many_left": "You have {count} timers: {items}.",
            "item": "the {label} with {left} left",
            "paused": "Paused your {label}.",
            "resumed": "Resumed your {label}.",
            "changed": "Your {label} now has {left} left.",
            "failed": "I couldn't do that: {why}.",
        },
    },
)
