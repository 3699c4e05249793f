"""The hearing front end: microphone chunks in, what was heard out. Synchronous, audio time.

Every chunk first loses the echo of the assistant's own voice (``EchoCanceller``, when the
speaker is open: the detectors hear ``Cleaned.chunk``, speech to text ``Cleaned.speech``),
then goes to the wake word engine, which therefore hears one continuous stream (its
features never jump over a stretch of audio); the last ``preroll`` chunks are kept. After
a confirmed detection the VAD is reset and warmed over the pre-roll (so it starts
every question in the same state, at hour 1 as at hour 100, and not cold at the wake word); what
follows goes to it and to the ``Endpointer`` until the utterance ends; detections meanwhile
are part of the question and ignored. The question's audio starts a pre-roll before its
first speech when that came after a pause, and speech that was only the end of the wake
phrase (the detection often comes inside "Jarvis") starts listening again instead of ending
a question of its own. At a short pause the words so far are transcribed
(``transcribe``, in this same thread): when they read as an unfinished sentence
(``endofturn.unfinished``) the end waits for the longer pause silence; while the voice loop
says the answer started then cannot play yet (``feed(preparing=True)``), it waits up to
``stt.ready_wait_ms`` more for it, as ending sooner would not make it play sooner. Then a new wake
word is a barge-in, even while the answer is being transcribed. With ``interrupt_speech_ms``
the user's voice alone is one too, while the assistant speaks: once the echo canceller has
settled, a voice detector listens to what it leaves (the user and the room, not the
assistant), and that much speech in a row starts a question as a wake word would
(VOICE_INTERRUPT; the pre-roll holds its first words). A candidate that a later
stage of the wake word engine rejected is returned as ``Rejected`` (it starts nothing;
``heisenberg listen`` shows it).

``Hearing.feed`` returns bus events (WAKEWORD_DETECTED, VOICE_INTERRUPT, SPEECH_STARTED, and
TURN_ENDED when
the wake word was followed by silence) and cues for the task side: ``Pause`` (the speaker
paused long enough to transcribe early), ``Resumed`` (they went on) and ``Utterance`` (the
audio of the question, with its SPEECH_ENDED event). It blocks (the wake word model and the VAD run
here), so the voice loop calls it in a worker thread, one chunk at a time; nothing else
touches it meanwhile. Time is the audio's own: the tests feed recorded speech and need no
sleeps.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from heisenberg.audio.echo import EchoCanceller
from heisenberg.audio.format import CHUNK_MS, RATE_HZ, AudioChunk
from heisenberg.core.config import Config
from heisenberg.core.events import (
    Event,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    TurnEnded,
    VoiceInterrupt,
    WakewordDetected,
)
from heisenberg.lang import words_in
from heisenberg.voice.endofturn import unfinished
from heisenberg.voice.vad import Endpointer, EndpointEvent, SileroVad, Vad, WebRtcVad
from heisenberg.voice.wakeword import (
    CHECK_AUDIO_S,
    Detection,
    WakeWordEngine,
    after_wake_word,
    wake_word_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pause:
    """The speaker paused mid-utterance: the audio so far, to transcribe early."""

    turn_id: str
    samples: np.ndarray
    text: str | None = None
    """Its transcript, when the hearing made one to judge the end of turn."""
    unfinished: bool = False
    """The transcript reads unfinished: the end waits for the longer pause silence."""
    repeated: bool = False
    """Its words are those of the turn's previous ``Pause``: what was heard between the two
    (a noise the VAD took for speech, a cough) added none. The silence counts from the
    previous pause, and an answer started there still fits."""


@dataclass(frozen=True)
class Resumed:
    """Speech went on after a ``Pause``: an early transcript of it is stale."""

    turn_id: str


@dataclass(frozen=True)
class Utterance:
    """The end of speech was decided: the question's audio, pre-roll included."""

    turn_id: str
    samples: np.ndarray
    ended: SpeechEnded


@dataclass(frozen=True)
class Rejected:
    """A wake word candidate that the engine's confirmation stage turned down."""

    detection: Detection


@dataclass(frozen=True)
class Hold:
    """A sound rose over the answer (what the echo canceller leaves, after a quiet while):
    playback pauses where it is until the sound proves a voice (a ``VoiceInterrupt`` follows,
    and the answer stops) or not (``Release``)."""


@dataclass(frozen=True)
class Release:
    """The held sound did not interrupt: the answer goes on from where it was held."""


Cue = Pause | Resumed | Utterance | Rejected | Hold | Release
Heard = Event | Cue

INTERRUPT_FLOOR = 30
"""RMS (of 32768) below which what the echo canceller leaves is nobody speaking (-61 dBFS)."""
INTERRUPT_PREROLL_MS = 500
"""Audio kept from before a voice interruption's decision. It comes when enough speech
frames have added up, up to ~0.3 s after a soft onset ("stop": its "s" is not voiced), not a
known time after a wake phrase, so it keeps more than ``stt.preroll_ms`` (the 500 ms that
bench/interrupt.py measured)."""
RESUME_SPEECH_MS = 96
"""Speech in a row that continues a question just ended (``stt.resume_window_ms``): what
a voice interruption needs (bench/interrupt.py measured it over the answer)."""
WAKE_TAIL_S = 0.8
"""Speech at most this long, going on when a wake word was confirmed and followed by a pause,
may be the end of the wake phrase itself (the detection often comes inside "Jarvis"): its
transcript with the phrase's audio says (``Hearing._wake_tail``)."""
TRIM_AFTER_S = 0.24
"""Silence from the start of listening to the first speech that makes what came before it
(the pre-roll) not part of the question (``Hearing._trim_before_speech``)."""
WAKE_TAIL_SURE_S = 0.2
"""Speech this short there is the phrase's end whatever its transcript says (whisper heard
SVOX pico's "Hey Jarvis" as "H.R.V."): no word is said so quickly and then paused after."""
HOLD_AFTER_QUIET_MS = 320
"""A sound over the answer holds it only when what the canceller left was not loud for this
long before (an onset, not a fan that runs on)."""
INTERRUPT_BELOW_DB = -15.0
"""What the canceller leaves must be at most this far below the microphone's signal to be
a voice over the answer, dB."""


class Hearing:
    def __init__(self, wake: WakeWordEngine, vad: Vad, endpointer: Endpointer, *,
                 preroll_chunks: int, early_stt_s: float, speaking_threshold: float,
                 wake_word: str = "", transcribe: Callable[[np.ndarray], str] | None = None,
                 canceller: EchoCanceller | None = None, interrupt_speech_ms: int = 0,
                 interrupt_vad: SileroVad | None = None, language_code: str = "en",
                 resume_window_ms: int = 0, resume_vad: SileroVad | None = None,
                 headphones: bool = False, interrupt_hold_ms: int = 0) -> None:
        """``early_stt_s``: seconds of silence after speech before ``Pause`` (0 = never).
        ``speaking_threshold``: the wake word threshold while the assistant's own voice
        plays, until ``canceller`` has settled. ``wake_word``: its distinctive word, to
        ignore it in what the speaker plays.
        ``transcribe``: speech-to-text for the end-of-turn judgement at a pause (None = the
        end is decided on silence alone). ``canceller``: removes the speaker's echo from
        every chunk before anything else hears it. ``interrupt_speech_ms``: speech over the
        assistant's voice that interrupts it without the wake word (0 = never; needs the
        canceller and ``interrupt_vad``). ``language_code``: the language whose sentences
        the end-of-turn rule reads. ``resume_window_ms``: after a question's end, speech
        within this long (heard by ``resume_vad``) continues it (0 = never).
        ``headphones``: the microphone cannot hear the assistant: no canceller is needed,
        and speech while it talks is the user's. ``interrupt_hold_ms``: a voice interruption
        is awaited this long with the answer held (``Hold``) from the first loud sound over
        it (0 = the answer plays until the interruption is decided)."""
        self.language_code = language_code
        self.wake = wake
        self.canceller = canceller
        self.transcribe = transcribe
        self.vad = vad
        self.endpointer = endpointer
        self.early_stt_s = early_stt_s
        self.speaking_threshold = speaking_threshold
        self.wake_word = wake_word
        self.headphones = headphones
        self.interrupt_vad = interrupt_vad if canceller is not None or headphones else None
        self.interrupt_frames = (0 if self.interrupt_vad is None else
                                 -(-interrupt_speech_ms * RATE_HZ // (1000 * SileroVad.FRAME)))
        """Frames of speech in a row that interrupt the assistant (0 = never)."""
        self._voiced_frames = 0
        self._hearing_echo = False
        self.hold_chunks = (-(-interrupt_hold_ms // CHUNK_MS)
                            if self.interrupt_frames and interrupt_hold_ms > 0 else 0)
        """Chunks an unconfirmed ``Hold`` lasts (0 = never hold)."""
        self._held: int | None = None
        """Chunks since the answer was held; None while it is not."""
        self._hold_spent = False
        """This answer was held once for nothing: the next sounds over it do not hold it."""
        self._quiet_chunks = 0
        """Chunks in a row over the answer that were not loud."""
        self.holds = self.releases = 0
        """Answers held, and held for nothing (released)."""
        self.resume_vad = resume_vad if resume_window_ms > 0 else None
        self.resume_window_ms = resume_window_ms
        self._resume_frames = -(-RESUME_SPEECH_MS * RATE_HZ // (1000 * SileroVad.FRAME))
        self._voiced_run = 0
        self._ended: tuple[str, np.ndarray, int] | None = None
        """The last question while it may still go on: its turn, its audio and the audio
        time its end was decided."""
        self._since_end: list[AudioChunk] = []
        """What speech to text would hear since then."""
        self.preroll_chunks = max(1, preroll_chunks)
        self._interrupt_preroll = (0 if self.interrupt_vad is None else
                                   -(-INTERRUPT_PREROLL_MS // CHUNK_MS))
        # A wake word confirmed by stage 3 (a check) comes late: its question reaches
        # back over the audio the check heard (Detection.late_ms, at most CHECK_AUDIO_S).
        self._late_chunks = -(-int(CHECK_AUDIO_S * 1000) // CHUNK_MS)
        self._recent: collections.deque[tuple[AudioChunk, AudioChunk]] = collections.deque(
            maxlen=max(self.preroll_chunks, self._late_chunks, self._interrupt_preroll))
        """The last chunks while waiting: (what the detectors heard, what speech to text
        would: ``Cleaned``)."""
        self._utterance: list[AudioChunk] = []
        """The question so far, for speech to text."""
        self._paused = False
        self._pause_words: list[str] = []
        """The words of the turn's last early transcript."""
        self._pause_samples = 0
        """How much audio that transcript was made from."""
        self._quiet_since_s = 0.0
        """Endpointer time at which the silence of the turn's last ``Pause`` began."""
        self.same_words_end = True
        """Speech that adds no words to the early transcript does not restart the silence
        (a benchmark turns it off to compare)."""
        self.listening_to = ""
        """The turn whose question is being heard; empty while waiting for the wake word."""
        self._no_speech_s = endpointer.no_speech_timeout_s
        self.fed_ms = 0
        """Audio time of the end of the last chunk fed."""
        self.listen_start_ms = 0
        """Audio time at which hearing the current question began (the detection's chunk
        end), milliseconds on the source's clock."""
        self._trim = True
        """Whether the current question's audio may lose what came before its first speech:
        only the usual pre-roll may, not a longer reach back (``start``)."""
        self._wake_phrase: tuple[str, np.ndarray] | None = None
        """After a wake word, until the first pause: its word and the audio before the
        pre-roll, which holds the rest of the phrase."""

    def feed(self, chunk: AudioChunk, *, playing: bool = False, echo: str = "",
             preparing: bool = False, echoing: bool = False) -> list[Heard]:
        """One chunk of microphone audio. ``playing``: the assistant's own voice is playing;
        ``echoing``: it is, or it ended so recently that the room may still echo it;
        ``echo``: the words the microphone may be hearing from the speaker; ``preparing``:
        the answer started at the last ``Pause`` cannot play yet (the end waits up to
        ``Endpointer.ready_wait_s`` for it)."""
        self.fed_ms = chunk.timestamp_ms + round(chunk.duration_ms)
        self.endpointer.preparing = preparing and self._paused
        raw = speech = chunk
        if self.canceller is not None:
            self.canceller.listening = bool(self.listening_to)
            chunk, speech = self.canceller.clean(chunk)
        # The higher threshold keeps its own voice from waking it; once the canceller has
        # settled (20 dB of the echo removed, two seconds running; 50-60 on the rig) its
        # voice is gone from what the wake word hears, and the normal stages decide.
        strict = playing and not self.headphones and not (
            self.canceller is not None and self.canceller.settled)
        detection = self.wake.process(chunk, self.speaking_threshold if strict else None)
        if self.listening_to:
            return self._listen(chunk, speech)
        self._recent.append((chunk, speech))
        if detection is None:
            return (self._continuation(raw, chunk, speech, playing or echoing)
                    or self._interruption(raw, chunk, playing))
        if not detection.confirmed:
            return [Rejected(detection)]
        self._ended = None
        word = wake_word_text(detection.model) or self.wake_word
        if word and word in echo.lower():
            log.info("wake word ignored: it is in what I am saying")
            return []
        late = min(self._late_chunks, -(-detection.late_ms // CHUNK_MS))
        keep = max(self.preroll_chunks, late)
        before = [speech for _, speech in list(self._recent)[:-keep]]
        self.start(chunk.timestamp_ms + round(chunk.duration_ms), preroll_chunks=keep)
        if word and before and self.transcribe is not None:
            self._wake_phrase = (word, np.concatenate([c.array() for c in before]))
        return [WakewordDetected(model=detection.model, score=detection.score,
                                 verifier=detection.verdict, stage=detection.stage,
                                 check=detection.check, transcript=detection.transcript,
                                 turn_id=self.listening_to)]

    def _interruption(self, raw: AudioChunk, chunk: AudioChunk, playing: bool) -> list[Heard]:
        """While the assistant speaks (its echo cancelled from ``raw``, which gave
        ``chunk``): speech in what is left, ``interrupt_frames`` frames in a row, starts a
        question. Silero's speech probability does not depend on the level, and it hears
        speech in the faint residue of the echo too: a frame counts only when what is left
        is loud enough to be someone (``INTERRUPT_FLOOR``) and no more than
        ``INTERRUPT_BELOW_DB`` below the microphone's signal (the residue is 25-50 dB
        below it; a user under an echo 12 dB louder, 12 dB). With ``headphones`` there is
        no echo: loud enough is enough."""
        if self.interrupt_vad is None:
            return []
        if self.headphones:
            listening, loud = playing, _energy(chunk) >= INTERRUPT_FLOOR ** 2
        else:
            assert self.canceller is not None
            listening = playing and chunk is not raw and self.canceller.settled
            loud = listening and _over_echo(raw, chunk)
        cues: list[Heard] = []
        if not listening:
            if self._held is not None:  # the answer ended or the canceller lost the room
                cues.append(self._release("the answer no longer plays over it"
                                          if not playing else "the canceller unsettled"))
            if not playing:  # the next answer may be held again
                self._hold_spent = False
                self._quiet_chunks = 0
            if self._hearing_echo:  # the answer ended: the next one starts afresh
                self._hearing_echo = False
                self._voiced_frames = 0
                self.interrupt_vad.reset()
            return cues
        self._hearing_echo = True
        if self._held is not None:
            self._held += 1
        elif (loud and self.hold_chunks and not self._hold_spent
              and self._quiet_chunks * CHUNK_MS >= HOLD_AFTER_QUIET_MS):
            self._held = 0
            self.holds += 1
            log.info("answer held: a sound over it (%.0f dB under the microphone)",
                     10 * np.log10(max(_energy(chunk), 1.0) / max(_energy(raw), 1.0)))
            cues.append(Hold())
        self._quiet_chunks = 0 if loud else self._quiet_chunks + 1
        for p in self.interrupt_vad.probabilities(chunk):
            voiced = loud and p >= self.interrupt_vad.threshold
            self._voiced_frames = self._voiced_frames + 1 if voiced else 0
        if self._voiced_frames < self.interrupt_frames:
            if self._held is not None and self._held >= self.hold_chunks:
                self._hold_spent = True
                cues.append(self._release(f"no voice in {self.hold_chunks * CHUNK_MS} ms"))
            return cues
        self._held = None  # the interruption stops the answer
        end_ms = chunk.timestamp_ms + round(chunk.duration_ms)
        speech_ms = self._voiced_frames * SileroVad.FRAME * 1000 // RATE_HZ
        left, heard = _energy(chunk), _energy(raw)
        if self.canceller is not None:
            log.info("voice interruption: %d ms of speech over the answer (%.0f dB under the "
                     "microphone, RMS %.0f; echo delay %.0f ms)", speech_ms,
                     -10 * np.log10(heard / left), np.sqrt(left),
                     self.canceller.stats.delay_ms)
        else:
            log.info("voice interruption: %d ms of speech over the answer (RMS %.0f, "
                     "headphones)", speech_ms, np.sqrt(left))
        self._voiced_frames = 0
        self._hearing_echo = False
        self.interrupt_vad.reset()
        self.start(end_ms, preroll_chunks=self._interrupt_preroll)
        # The speech is heard already (a short "Stop." may be over before the end-of-speech
        # detector would have counted it as begun, and the question would be lost).
        self.endpointer.speech_on()
        return [*cues, VoiceInterrupt(onset_ms=end_ms - speech_ms, speech_ms=speech_ms,
                                      turn_id=self.listening_to),
                SpeechStarted(audio_ms=0, turn_id=self.listening_to)]

    def _release(self, why: str) -> Release:
        self._held = None
        self.releases += 1
        log.info("answer released: %s", why)
        return Release()

    def _continuation(self, raw: AudioChunk, chunk: AudioChunk, speech: AudioChunk,
                      echoing: bool) -> list[Heard]:
        """Within ``resume_window_ms`` of a question's end: ``RESUME_SPEECH_MS`` of speech
        in a row continues it. The new turn hears the question's audio, what came since and
        what follows, as one utterance. While the assistant's voice plays or may still echo
        in the room (``echoing``), a frame counts as for a voice interruption (the canceller
        settled, what it leaves loud enough and close enough to the microphone's level);
        otherwise (or with ``headphones``) loud enough is enough."""
        if self._ended is None or self.resume_vad is None:
            return []
        turn_id, samples, end_ms = self._ended
        if self.fed_ms - end_ms > self.resume_window_ms:
            self._ended, self._since_end = None, []
            return []
        self._since_end.append(speech)
        if echoing and not self.headphones:
            loud = (self.canceller is not None and chunk is not raw
                    and self.canceller.settled and _over_echo(raw, chunk))
        else:
            loud = _energy(chunk) >= INTERRUPT_FLOOR ** 2
        for p in self.resume_vad.probabilities(chunk):
            self._voiced_run = self._voiced_run + 1 if loud and p >= self.resume_vad.threshold \
                else 0
        if self._voiced_run < self._resume_frames:
            return []
        speech_ms = self._voiced_run * SileroVad.FRAME * 1000 // RATE_HZ
        log.info("the question goes on: %d ms of speech %d ms after its end", speech_ms,
                 self.fed_ms - end_ms)
        since = self._since_end
        self._ended, self._since_end, self._voiced_run = None, [], 0
        self._voiced_frames = 0
        new_turn = self.start(self.fed_ms, preroll_chunks=min(len(since), self.preroll_chunks))
        # The whole question: its audio, the pause, and the speech that goes on.
        self._utterance = [AudioChunk(samples.astype(np.int16).tobytes(), RATE_HZ,
                                      end_ms - len(samples) * 1000 // RATE_HZ), *since]
        self.endpointer.speech_on()
        return [VoiceInterrupt(onset_ms=self.fed_ms - speech_ms, speech_ms=speech_ms,
                               continues=turn_id, turn_id=new_turn),
                SpeechStarted(audio_ms=0, turn_id=new_turn)]

    def start(self, at_ms: int, no_speech_s: float | None = None,
              preroll_chunks: int | None = None) -> str:
        """Begin hearing a question at ``at_ms`` (audio time, the end of the last chunk fed),
        as after a wake word: a follow-up, or a benchmark that knows where the question
        starts. ``preroll_chunks``: how much of the audio before it to keep (default: the
        pre-roll). ``no_speech_s``: how long to wait for speech this time (default: the
        endpointer's own). Returns the new turn's id."""
        self.listening_to = uuid.uuid4().hex[:12]
        self.listen_start_ms = at_ms
        self._held = None  # a wake word over a held answer: the barge-in stops it
        self._ended, self._since_end = None, []
        self.endpointer.reset()
        self.endpointer.no_speech_timeout_s = (self._no_speech_s if no_speech_s is None
                                               else no_speech_s)
        self._paused = False
        self._pause_words = []
        self._wake_phrase = None
        # Pre-roll: the audio just before the detection, else the first word is lost.
        keep = self.preroll_chunks if preroll_chunks is None else preroll_chunks
        self._trim = keep <= self.preroll_chunks
        before = list(self._recent)[-keep:]
        self._utterance = [speech for _, speech in before]
        self._recent.clear()
        self.vad.reset()
        for heard, _ in before:
            self.vad.is_speech(heard)
        return self.listening_to

    def answer_ready(self) -> list[Heard]:
        """The answer started at the last ``Pause`` can play now: if the end was waiting only
        for it (the silence since the speech already ends a finished sentence), the
        utterance ends here, at the audio time of the last chunk fed, not a chunk later."""
        ep = self.endpointer
        ep.preparing = False
        if not (self.listening_to and self._paused and ep.in_speech and not ep.done
                and not ep.hold and ep.silent_for(ep.end_silence_s)):
            return []
        turn_id, self.listening_to = self.listening_to, ""
        return [self._utterance_done(turn_id, "silence")]

    def finish(self) -> list[Heard]:
        """The input ended: the question being heard ends here (``end_of_input``) and is
        returned as an ``Utterance`` if speech had started, else as no speech."""
        turn_id, ep = self.listening_to, self.endpointer
        if not turn_id:
            return []
        self.listening_to = ""
        if not ep.in_speech:
            self._utterance = []
            return [TurnEnded(outcome="no_speech", turn_id=turn_id)]
        return [self._utterance_done(turn_id, "end_of_input")]

    def stop(self, reason: str) -> list[Heard]:
        """Stop hearing the current question (the input ended, or failed)."""
        turn_id, self.listening_to = self.listening_to, ""
        self._utterance = []
        self._ended, self._since_end = None, []
        self.endpointer.reset()
        if not turn_id:
            return []
        return [Interrupted(reason=reason, turn_id=turn_id),
                TurnEnded(outcome="interrupted", turn_id=turn_id)]

    def _listen(self, chunk: AudioChunk, speech: AudioChunk) -> list[Heard]:
        """``chunk`` for the voice detector, ``speech`` for speech to text."""
        turn_id = self.listening_to
        self._utterance.append(speech)
        is_speech = self.vad.is_speech(chunk)
        ep = self.endpointer
        event = ep.process(chunk.duration_ms / 1000, is_speech)
        heard: list[Heard] = []
        if is_speech or not ep.in_speech:
            if self._paused:
                heard.append(Resumed(turn_id))
            self._paused = False
            ep.hold = False
        # The silence to the VAD's frame: a chunk whose speech ended in its first frame
        # counts as speech for the end, but its quiet frames count here (~40 ms sooner).
        quiet_s = max(ep.silence_s, self.vad.quiet_s)
        if (ep.in_speech and not self._paused and self.early_stt_s > 0 and not ep.done
                and quiet_s >= self.early_stt_s - 1e-6):
            # Whisper takes ~0.2-0.5 s here; starting it this far into the silence instead of
            # at the end-of-speech decision saves most of that.
            self._paused = True
            samples = self._samples()
            if self._wake_tail(samples, quiet_s):
                # Not the question: listen for it from here, as just after the wake word.
                log.info("the speech so far was the end of the wake phrase: still listening")
                self._paused = False
                self._utterance = self._utterance[-1:]
                ep.restart()
                return heard
            text = self._judge(samples)
            words = words_in(text or "")
            repeated = (self.same_words_end and bool(words) and words == self._pause_words
                        and self._no_words(samples[self._pause_samples:]))
            if repeated:
                # Nothing was said since the last pause: the silence began there (the end
                # still waits a little after the sound: it may be a word beginning).
                ep.credit_s = ep.elapsed_s - self._quiet_since_s - ep.silence_s
                log.info("the speech since the last pause added no words: %.2f s more of "
                         "silence counted", ep.credit_s)
            else:
                self._pause_words, self._pause_samples = words, len(samples)
                self._quiet_since_s = ep.elapsed_s - ep.silence_s
            heard.append(Pause(turn_id, samples, text, ep.hold, repeated))
        at_ms = int(ep.elapsed_s * 1000)
        if event is EndpointEvent.SPEECH_STARTED:
            self._trim_before_speech()
            heard.append(SpeechStarted(audio_ms=at_ms, turn_id=turn_id))
        elif event is EndpointEvent.NO_SPEECH:
            self.listening_to, self._utterance = "", []
            heard.append(TurnEnded(outcome="no_speech", turn_id=turn_id))
        elif event in (EndpointEvent.SPEECH_ENDED, EndpointEvent.MAX_LENGTH):
            self.listening_to = ""
            heard.append(self._utterance_done(
                turn_id, "max_length" if event is EndpointEvent.MAX_LENGTH else "silence"))
        return heard

    def _trim_before_speech(self) -> None:
        """When the speech began after a pause (``TRIM_AFTER_S``) from the start of
        listening, the question's audio begins a pre-roll before it: what came before that
        (the end of the wake phrase: "...vis. What is" -> "Us. What is...") is not the
        question. Not when ``start`` kept more than the usual pre-roll (a detection confirmed
        late): that audio may hold the question's first words, said before it. (A voice
        interruption starts in speech: its pre-roll is never trimmed.)"""
        start_s = self.endpointer.speech_start_at_s
        assert start_s is not None
        if start_s < TRIM_AFTER_S or not self._trim:
            return
        onset_ms = self.listen_start_ms + start_s * 1000
        since_ms = onset_ms - self.preroll_chunks * CHUNK_MS
        while (len(self._utterance) > 1 and self._utterance[0].timestamp_ms
               + self._utterance[0].duration_ms <= since_ms):
            self._utterance.pop(0)

    def _wake_tail(self, samples: np.ndarray, quiet_s: float) -> bool:
        """At the first pause after a wake word: whether the speech heard so far is only the
        end of the wake phrase. The detection often comes before the phrase ends; the rest
        of "Jarvis" then starts the question and, with a pause after it, would end it
        ("...vis." -> "Service."). Judged when the speech was going on from the start and
        is short (``WAKE_TAIL_S``), on a transcript with the audio before the pre-roll
        (that holds the phrase's start): nothing after the wake phrase, it was the tail
        (and a blip of ``WAKE_TAIL_SURE_S`` at most always is)."""
        phrase, self._wake_phrase = self._wake_phrase, None
        ep = self.endpointer
        assert ep.speech_start_at_s is not None  # a pause comes after speech
        speech_s = ep.elapsed_s - quiet_s  # from the start of listening, it began there
        if (phrase is None or ep.speech_start_at_s > CHUNK_MS / 1000
                or speech_s > WAKE_TAIL_S):
            return False
        if speech_s <= WAKE_TAIL_SURE_S + 1e-6:
            return True
        assert self.transcribe is not None
        word, head = phrase
        try:
            text = self.transcribe(np.concatenate([head, samples]))
        except Exception as exc:
            log.warning("transcript of the wake phrase failed (%s: %s)",
                        type(exc).__name__, exc)
            return False
        after = after_wake_word(text, word)
        return after != text and not words_in(after)

    def _judge(self, samples: np.ndarray) -> str | None:
        """Transcribe the words so far and hold the end while they are unfinished. Decided
        here, before the next chunk, so the end is the same in audio time however long
        whisper takes (the chunks wait in the source's queue meanwhile)."""
        if self.transcribe is None:
            return None
        try:
            text = self.transcribe(samples)
        except Exception as exc:  # the turn task transcribes again and reports the error
            log.warning("early transcript failed (%s: %s); the end is decided on silence",
                        type(exc).__name__, exc)
            return None
        self.endpointer.hold = unfinished(text, self.language_code)
        if self.endpointer.hold:
            log.info("%r reads unfinished: waiting up to %.1f s of silence", text,
                     self.endpointer.needed_silence_s)
        return text

    def _no_words(self, samples: np.ndarray) -> bool:
        """Whether what was heard since the last pause alone holds no words: the same
        transcript of the whole is not enough, whisper often leaves out a last word that
        has only begun."""
        assert self.transcribe is not None
        try:
            return not words_in(self.transcribe(samples))
        except Exception as exc:
            log.warning("transcript of the speech since the pause failed (%s: %s)",
                        type(exc).__name__, exc)
            return False

    def _utterance_done(self, turn_id: str, reason: str) -> Utterance:
        samples = self._samples()
        self._utterance = []
        if self.resume_vad is not None and reason == "silence":
            self._ended, self._since_end, self._voiced_run = (turn_id, samples,
                                                              self.fed_ms), [], 0
            self.resume_vad.reset()
        ended = SpeechEnded(audio_ms=int(self.endpointer.elapsed_s * 1000),
                            duration_ms=len(samples) * 1000 // RATE_HZ, reason=reason,
                            turn_id=turn_id)
        self.endpointer.reset()
        return Utterance(turn_id, samples, ended)

    def _samples(self) -> np.ndarray:
        return np.concatenate([c.array() for c in self._utterance])


def _energy(chunk: AudioChunk) -> float:
    """Mean square of the samples."""
    return float(np.mean(chunk.array().astype(np.float64) ** 2))


def _over_echo(raw: AudioChunk, chunk: AudioChunk) -> bool:
    """What the echo canceller left of ``raw`` (``chunk``) is loud enough to be someone
    (``INTERRUPT_FLOOR``) and no more than ``INTERRUPT_BELOW_DB`` below the microphone's
    signal (the residue of the echo alone is 25-50 dB below it; a user under an echo 12 dB
    louder, 12 dB)."""
    left = _energy(chunk)
    return (left >= INTERRUPT_FLOOR ** 2
            and 10 * np.log10(left / max(_energy(raw), 1.0)) >= INTERRUPT_BELOW_DB)


def vad_for(config: Config) -> Vad:
    """The end-of-speech VAD that ``stt.vad`` names."""
    stt = config.stt
    if stt.vad == "webrtc":
        return WebRtcVad(stt.vad_aggressiveness)
    return SileroVad(stt.vad_threshold)


def hearing_for(config: Config, wake: WakeWordEngine, *, vad: Vad | None = None,
                early_stt_s: float | None = None, speaking_threshold: float | None = None,
                transcribe: Callable[[np.ndarray], str] | None = None,
                canceller: EchoCanceller | None = None,
                interrupt_speech_ms: int | None = None) -> Hearing:
    """The hearing front end for ``config``: the daemon's voice loop and ``heisenberg
    listen`` both build theirs here (the keyword arguments override the config).
    ``transcribe`` judges the end of turn at a pause when ``stt.end_of_turn`` is on and
    speech-to-text is local. The assistant is interrupted by voice alone
    (``session.interrupt_speech_ms``) only with a ``canceller``, or with headphones
    (``audio.echo_cancel = "headphones"``: there is no echo)."""
    stt = config.stt
    interrupt_ms = (config.session.interrupt_speech_ms if interrupt_speech_ms is None
                    else interrupt_speech_ms)
    headphones = config.audio.echo_cancel == "headphones"
    if interrupt_ms and canceller is None and not headphones:
        log.warning("session.interrupt_speech_ms is set but echo cancellation is off: only "
                    "the wake word interrupts (the assistant's own voice would)")
    return Hearing(
        wake, vad or vad_for(config),
        Endpointer(stt.end_silence_ms / 1000, stt.max_utterance_s, stt.no_speech_timeout_s,
                   pause_silence_s=stt.pause_silence_ms / 1000,
                   ready_wait_s=stt.ready_wait_ms / 1000),
        preroll_chunks=round(stt.preroll_ms / 80),
        early_stt_s=stt.early_start_ms / 1000 if early_stt_s is None else early_stt_s,
        speaking_threshold=(config.wakeword.speaking_threshold if speaking_threshold is None
                            else speaking_threshold),
        wake_word=wake_word_text(wake.names[0]),
        # A remote service could stall the hearing (and the wake word) for its whole
        # timeout: with one, the end is decided on silence and whisper runs on the task side.
        transcribe=transcribe if stt.end_of_turn and stt.engine == "local" else None,
        canceller=canceller, interrupt_speech_ms=interrupt_ms,
        interrupt_vad=(SileroVad(stt.vad_threshold)
                       if interrupt_ms and (canceller or headphones) else None),
        language_code=config.language, resume_window_ms=stt.resume_window_ms,
        resume_vad=SileroVad(stt.vad_threshold) if stt.resume_window_ms else None,
        headphones=headphones, interrupt_hold_ms=config.session.interrupt_hold_ms)
