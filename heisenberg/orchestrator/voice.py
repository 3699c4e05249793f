"""The hands-free loop's task side: wake word -> listen -> transcribe -> think -> speak.

Audio is read continuously and fed to the ``Hearing`` front end (in a worker thread: the wake
word model blocks). What it hears drives the tasks here: a wake word cancels the running
turn (barge-in: LLM stream and playback stop) and starts listening, and so does the user's
voice over the answer with ``session.interrupt_speech_ms`` (no earcon then: they are
already speaking); a pause starts an early
transcript and, from it, an early answer; the end of speech starts the turn task, which
transcribes (or takes the early transcript), takes a camera frame and runs the assistant's
``Turn`` with a voice, consuming its events. After a spoken answer, with
``session.follow_up_s``, the hearing is started again without the wake word once the speaker
is quiet (a follow-up). Blocking inference (wake word, whisper, piper) always runs in worker
threads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from heisenberg.audio.echo import EchoCanceller
from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.audio.sources import AudioSource
from heisenberg.core.errors import AudioDeviceError, HeisenbergError, InternalError, STTError
from heisenberg.core.events import (
    ErrorEvent,
    FollowUpStarted,
    Interrupted,
    TurnEnded,
    VoiceInterrupt,
    WakewordDetected,
)
from heisenberg.core.latency import TurnRecord
from heisenberg.core.states import State
from heisenberg.core.tasks import TaskSet, cancel_and_wait
from heisenberg.lang import language, words_in
from heisenberg.orchestrator.assistant import Assistant, TurnOutcome, Voice
from heisenberg.orchestrator.hearing import (
    Heard,
    Hold,
    Pause,
    Rejected,
    Release,
    Resumed,
    Utterance,
    hearing_for,
)
from heisenberg.orchestrator.prefetch import Prefetch
from heisenberg.orchestrator.ringing import Ringer
from heisenberg.orchestrator.turn import CONTINUED
from heisenberg.skills import Skills
from heisenberg.skills.intents import TIMER
from heisenberg.vision.camera import Camera, FrameGrabber
from heisenberg.voice.stt import SpeechToText
from heisenberg.voice.tts import TextToSpeech
from heisenberg.voice.vad import Vad
from heisenberg.voice.wakeword import WakeWordEngine, question_in, wake_word_text

log = logging.getLogger(__name__)

KEEP_TURNS = 500
"""Voice turns kept in memory (at least; twice as many at most)."""

FOLLOW_UP_ECHO_S = 0.4
"""After the answer's last sample, how long the room may still echo it: the follow-up
window opens after that."""

SORRY = language("en").sorry
NO_ANSWER = language("en").no_answer
"""(In English: a loop says its language's, ``heisenberg/lang``.)"""


@dataclass
class VoiceTurn:
    turn_id: str
    transcript: str = ""
    outcome: TurnOutcome | None = None
    timings: TurnRecord = field(default_factory=lambda: TurnRecord(""))
    """Its latency record, from its events (``TurnRecord.seconds("first_audio")``)."""
    interrupted: bool = False
    early_answer: bool = False
    """The answer was started on the early transcript (before the end of speech)."""

    @property
    def finished(self) -> bool:
        return self.outcome is not None or self.interrupted


@dataclass
class EarlyAnswer:
    """What a pause gave: the early transcript, and the answer started from it."""

    raw: str = ""
    prefetch: Prefetch | None = None
    error: HeisenbergError | None = None


def earcon(rate_hz: int, freq_hz: float, ms: int = 120, volume: float = 0.25) -> AudioChunk:
    """A short sine blip with soft edges: the "I'm listening" / "got it" sound."""
    t = np.arange(int(rate_hz * ms / 1000)) / rate_hz
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    wave = volume * 32767 * envelope * np.sin(2 * np.pi * freq_hz * t)
    return AudioChunk(wave.astype(np.int16).tobytes(), rate_hz)


class VoiceLoop:
    def __init__(self, assistant: Assistant, source: AudioSource, sink: AudioSink,
                 wake: WakeWordEngine, stt: SpeechToText, tts: TextToSpeech,
                 vad: Vad | None = None, earcons: bool = True,
                 speaking_threshold: float = 0.7, early_stt_s: float = 0.15,
                 camera: Camera | None = None, early_answer: bool = True,
                 canceller: EchoCanceller | None = None, follow_up_s: float = 0.0) -> None:
        self.assistant = assistant
        self.words = language(assistant.config.language)
        """What the loop says itself, and the dismissals it hears."""
        self.bus = assistant.bus
        self.source = source
        self.sink = sink
        self.stt = stt
        self.tts = tts
        self.earcons = earcons
        self.early_answer = early_answer
        self.wake_words = tuple(wake_word_text(name) for name in wake.names)
        self.hearing = hearing_for(assistant.config, wake, vad=vad, early_stt_s=early_stt_s,
                                   speaking_threshold=speaking_threshold,
                                   transcribe=stt.transcribe, canceller=canceller)
        self.follow_up_s = follow_up_s
        self._window_s = 0.0
        """An answer was spoken (or a timer rang): listen this many seconds without the wake
        word once the speaker is quiet; 0: not."""
        self.ringer = Ringer(assistant.timers, tts, sink,
                             lambda: self.assistant.skills or Skills(self.words.code),
                             self._in_voice_turn, self._listen_after_ring)
        self.frames = FrameGrabber(camera)
        self._tasks = TaskSet("voice")
        self._turn_task: asyncio.Task[None] | None = None
        self._early: asyncio.Task[EarlyAnswer] | None = None
        self._early_watch: asyncio.Task[None] | None = None
        """Ends the utterance once the early answer can play (``_end_when_ready``)."""
        self._set_aside: asyncio.Task[EarlyAnswer] | None = None
        """The early answer of the last pause, once speech resumed: taken up again if the
        next pause has the same words (a noise, not words), else dropped."""
        self._hearing_lock = asyncio.Lock()
        """One caller of the hearing at a time: the chunks, and that watcher."""
        self.turns: list[VoiceTurn] = []
        """The recent voice turns, oldest first: the last ``KEEP_TURNS`` to ``2 * KEEP_TURNS``
        (a daemon runs for months; the history store keeps every conversation turn)."""
        self._forgotten_finished = 0
        self.prefetches = 0
        """Answers started on an early transcript."""
        self._continuing = ""
        """The turn that continues the question before it (``VoiceInterrupt.continues``)."""
        self.barge_in_ms: collections.deque[float] = collections.deque(maxlen=KEEP_TURNS)
        """Milliseconds from each barge-in detection to playback and LLM stream stopped."""
        self.interrupt_ms: collections.deque[float] = collections.deque(maxlen=KEEP_TURNS)
        """For each voice interruption on a live microphone and speaker: milliseconds from
        the onset of the user's speech (its capture time) to the answer's last sample
        sounding."""
        self.listening = asyncio.Event()
        """Set once the first audio chunk went through the wake word engine."""
        self.audio_error: str | None = None
        """The input device's last failure, until audio flows again."""

    @property
    def state(self) -> State:
        return self.assistant.state

    async def run(self, max_turns: int | None = None) -> list[VoiceTurn]:
        """Process audio until the source ends (then finish the running turn) or until
        ``max_turns`` turns have completed."""
        self._tasks.spawn(self.ringer.run(), "ringer")
        try:
            while True:
                try:
                    async for chunk in self.source.chunks():
                        try:
                            await self._hear(chunk)
                            self.listening.set()
                            self.audio_error = None
                        except Exception as exc:  # an engine bug: report it, keep listening
                            log.exception("audio processing failed")
                            self._report(InternalError(
                                f"audio processing failed ({type(exc).__name__}: {exc})"))
                            self._record_all(self.hearing.stop("error"))
                        if max_turns is not None and self._finished_turns() >= max_turns:
                            return self.turns
                    break
                except AudioDeviceError as exc:
                    self.audio_error = exc.message
                    self._report(exc)
                    if self.source.name.startswith("file:"):
                        raise
                    await asyncio.sleep(1.0)
            if self._turn_task is not None:  # the input ended: let the last turn finish
                await asyncio.wait({self._turn_task})
            self._record_all(self.hearing.stop("input ended"))
            return self.turns
        finally:
            await cancel_and_wait(self._turn_task)
            self._drop_early()
            await self._tasks.close()

    def device_status(self) -> dict[str, str]:
        """Microphone, speaker and camera, as the health endpoint reports them: ``<device>:
        ok``, ``<device>: error: <why>`` (the device retries), or for the microphone
        ``starting`` until audio flows."""
        mic_error = self.audio_error or self.source.error
        if mic_error:
            mic = f"error: {mic_error}"
        else:
            mic = "ok" if self.listening.is_set() else "starting"
        speaker = f"error: {self.sink.error}" if self.sink.error else "ok"
        return {"microphone": f"{self.source.name}: {mic}",
                "speaker": f"{self.sink.name}: {speaker}", "camera": self.frames.status}

    def _finished_turns(self) -> int:
        return self._forgotten_finished + sum(1 for t in self.turns if t.finished)

    def _keep(self, turn: VoiceTurn) -> None:
        self.turns.append(turn)
        if len(self.turns) > 2 * KEEP_TURNS:  # forget in batches: a trim costs a copy
            old, self.turns = self.turns[:-KEEP_TURNS], self.turns[-KEEP_TURNS:]
            self._forgotten_finished += sum(1 for t in old if t.finished)

    def _report(self, exc: HeisenbergError, turn_id: str = "") -> None:
        self.assistant.record(ErrorEvent(code=exc.code, message=exc.message, turn_id=turn_id))

    def _record_all(self, heard: list[Heard]) -> None:
        for item in heard:
            if not isinstance(item, Pause | Resumed | Utterance | Rejected | Hold | Release):
                self.assistant.record(item)

    # --- what the hearing heard -----------------------------------------------------------

    async def _hear(self, chunk: AudioChunk) -> None:
        async with self._hearing_lock:
            playing = self.state is State.SPEAKING or self.sink.now_playing is not None
            if self._window_s and not playing:
                await self._start_follow_up()
            heard = await asyncio.to_thread(
                self.hearing.feed, chunk, playing=playing, echo=self.sink.hearing(),
                preparing=self._early_preparing(),
                echoing=playing or bool(self.sink.hearing(FOLLOW_UP_ECHO_S)))
            await self._handle(heard, chunk)

    async def _end_when_ready(self, early: asyncio.Task[EarlyAnswer]) -> None:
        """Once the early answer's first audio is ready, end the utterance if the end was
        waiting only for it (between two chunks: up to a chunk sooner)."""
        await asyncio.wait({early})  # not cancelled with this watcher: the turn takes it
        if early.cancelled() or early.exception() is not None:
            return
        prefetch = early.result().prefetch
        if prefetch is None:
            return
        await prefetch.settled.wait()
        async with self._hearing_lock:
            if self._early is early:
                await self._handle(self.hearing.answer_ready(), None)

    async def _handle(self, heard: list[Heard], chunk: AudioChunk | None) -> None:
        for item in heard:
            if isinstance(item, Hold):
                self.sink.hold()  # a sound over the answer: it waits until we know
            elif isinstance(item, Release):
                self.sink.release()
            elif isinstance(item, Pause):
                aside = None
                if item.repeated:  # taken up again
                    aside, self._set_aside = self._set_aside, None
                self._drop_early()  # anything else, a set-aside answer these words made stale
                if aside is not None:
                    log.info("same words as at the last pause: its early answer goes on")
                    self._early = aside
                else:
                    self._early = self._tasks.spawn(self._early_answer(item), "early")
                self._early_watch = self._tasks.spawn(self._end_when_ready(self._early),
                                                      "early-ready")
            elif isinstance(item, Resumed):
                # Stale unless the next pause has the same words: kept aside till then.
                early, self._early = self._early, None
                self._drop_early()
                self._set_aside = early
            elif isinstance(item, Utterance):
                self.assistant.record(item.ended)
                if self.earcons:
                    await self._play_earcon(660.0)
                if self._set_aside is not None:  # ended with no pause since speech resumed
                    self._tasks.spawn(self._drop(self._set_aside), "drop-early")
                    self._set_aside = None
                early, self._early = self._early, None
                self._early_watch = None  # it sees the early answer taken, and ends
                self._turn_task = self._tasks.spawn(self._turn(item, early), "turn")
            elif isinstance(item, WakewordDetected | VoiceInterrupt):
                self.assistant.record(item)  # LISTENING: the running turn loses the state
                self._drop_early()
                await self.ringer.stop("wake word" if isinstance(item, WakewordDetected)
                                       else "voice")
                if self._turn_task is not None and not self._turn_task.done():
                    await self._barge_in(CONTINUED if isinstance(item, VoiceInterrupt)
                                         and item.continues else None)
                if isinstance(item, VoiceInterrupt):
                    if item.continues:
                        self._continuing = item.turn_id
                    await self.sink.stop()  # whoever was speaking (an API /speak too)
                    if chunk is not None:
                        self._time_interruption(chunk, item)
                else:
                    self.sink.release()  # held when the wake word began: its turn is over
                    if self.earcons:
                        await self._play_earcon(880.0)
            elif isinstance(item, Rejected):
                log.info("wake word candidate rejected by the verifier (%s, score %.2f, "
                         "verifier %.2f)", item.detection.model, item.detection.score,
                         item.detection.verdict or 0.0)
            else:
                if isinstance(item, TurnEnded):  # the wake word, then silence
                    self._drop_early()
                self.assistant.record(item)

    async def _start_follow_up(self) -> None:
        """Listen without the wake word, once the answer (and its echo in the room, which
        must not become a question) has died away. A typed question (the API, ``chat``)
        that takes the state first closes it: the window was for the spoken answer."""
        if self.state is not State.IDLE and not self._in_voice_turn():
            log.info("follow-up window dropped: a typed question came first")
            self._window_s = 0.0
            return
        if self.sink.hearing(FOLLOW_UP_ECHO_S) or self.state is not State.IDLE:
            return  # still echoing, or the voice turn is ending
        window_s, self._window_s = self._window_s, 0.0
        if self.hearing.listening_to:  # a wake word came first
            return
        # Between two feeds: the hearing's thread is not running now.
        turn_id = self.hearing.start(self.hearing.fed_ms, no_speech_s=window_s)
        self.assistant.record(FollowUpStarted(window_s=window_s, turn_id=turn_id))
        if self.earcons:
            await self._play_earcon(990.0, ms=60, volume=0.12)

    def _in_voice_turn(self) -> bool:
        """The user is speaking, or being answered aloud (a timer's ring waits)."""
        return (self.state is State.LISTENING or bool(self.hearing.listening_to)
                or (self._turn_task is not None and not self._turn_task.done()))

    def _listen_after_ring(self, window_s: float) -> None:
        self._window_s = window_s

    async def _barge_in(self, reason: str | None = None) -> None:
        """Stop the turn being answered; ``reason``: ``CONTINUED`` when its speaker went on
        with the question."""
        started = time.perf_counter()
        task, self._turn_task = self._turn_task, None
        await cancel_and_wait(task, msg=reason)
        stopped_ms = (time.perf_counter() - started) * 1000
        self.barge_in_ms.append(stopped_ms)
        log.info("barge-in: playback and LLM stream stopped in %.0f ms", stopped_ms)

    def _time_interruption(self, chunk: AudioChunk, item: VoiceInterrupt) -> None:
        """Note how long after the user began the answer fell silent, once the speaker's
        last block is known (it is being filled for a few more milliseconds)."""
        if chunk.captured_at is None:
            return
        onset = chunk.captured_at - (chunk.timestamp_ms - item.onset_ms) / 1000

        def note() -> None:
            if self.sink.sounding_until > 0:
                stopped_ms = (self.sink.sounding_until - onset) * 1000
                self.interrupt_ms.append(stopped_ms)
                log.info("voice interruption: the answer stopped %.0f ms after the user "
                         "began", stopped_ms)

        asyncio.get_running_loop().call_later(0.05, note)

    async def _play_earcon(self, freq_hz: float, ms: int = 120, volume: float = 0.25) -> None:
        try:
            await self.sink.play(earcon(self.tts.rate_hz, freq_hz, ms, volume))
        except AudioDeviceError as exc:
            self._report(exc)

    # --- the early answer -----------------------------------------------------------------

    async def _early_answer(self, pause: Pause) -> EarlyAnswer:
        """Transcribe what was said before the pause (unless the hearing did, to judge the
        end of turn); from it, start the answer."""
        got = (EarlyAnswer(pause.text) if pause.text is not None
               else await self._transcribe(pause.samples))
        if got.error is not None:
            return got
        raw = got.raw
        text = question_in(raw, *self.wake_words, went_on=pause.turn_id == self._continuing)
        if not (self.early_answer and text) or is_dismissal(text, self.words.code):
            return EarlyAnswer(raw)
        skills = self.assistant.skills
        if skills is not None and await asyncio.to_thread(skills.recognize, text) is not None:
            return EarlyAnswer(raw)  # a skill answers it at once: nothing to start early
        frame = await self.frames.grab()
        self.prefetches += 1
        return EarlyAnswer(raw, self.assistant.prefetch(text, frame, self.tts))

    def _early_preparing(self) -> bool:
        """The early answer is on its way but its first audio is not ready (its watcher,
        ``_end_when_ready``, still waits): ending the utterance now would not make it play
        sooner (the hearing waits a little for it)."""
        return self._early_watch is not None and not self._early_watch.done()

    def _drop_early(self) -> None:
        """Speech went on (or a new question began): the early answer is stale."""
        watch, self._early_watch = self._early_watch, None
        if watch is not None:
            watch.cancel()
        for task in (self._early, self._set_aside):
            if task is not None:
                self._tasks.spawn(self._drop(task), "drop-early")
        self._early = self._set_aside = None

    @staticmethod
    async def _drop(task: asyncio.Task[EarlyAnswer]) -> None:
        await cancel_and_wait(task)
        if task.done() and not task.cancelled() and task.exception() is None:
            prefetch = task.result().prefetch
            if prefetch is not None:
                await prefetch.cancel()  # closes the request: the server frees the slot

    async def _transcribe(self, samples: np.ndarray) -> EarlyAnswer:
        try:
            return EarlyAnswer(await asyncio.to_thread(self.stt.transcribe, samples))
        except STTError as exc:
            return EarlyAnswer(error=exc)
        except Exception as exc:  # an engine that does not wrap its failures
            error = STTError(f"speech-to-text failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return EarlyAnswer(error=error)

    # --- the turn -------------------------------------------------------------------------

    async def _turn(self, heard: Utterance, early: asyncio.Task[EarlyAnswer] | None) -> None:
        turn_id = heard.turn_id
        turn = VoiceTurn(turn_id, timings=TurnRecord(turn_id))
        turn.timings.observe(heard.ended)
        self._keep(turn)
        prefetch: Prefetch | None = None
        answering = False
        timers_before = {t.timer_id for t in self.assistant.timers.all()}
        try:
            # Without an early answer (which took its own), the frame is taken now, at the
            # end of speech, while whisper works.
            grab = None if early else self._tasks.spawn(self.frames.grab(), "camera")
            got = await early if early is not None else await self._transcribe(heard.samples)
            prefetch = got.prefetch
            if got.error is not None:  # said, like any failed turn (a lost remote STT...)
                self._fail(turn, got.error)
                if self.assistant.config.session.speak_errors:
                    await self._say(self.words.sorry)
                return
            text = turn.transcript = question_in(got.raw, *self.wake_words,
                                                 went_on=turn_id == self._continuing)
            if prefetch is not None:
                frame = prefetch.frame
            elif grab is not None:
                frame = await grab
            else:  # an early transcript without an early answer
                frame = await self.frames.grab()
            if not text:
                log.info("nothing intelligible was said; back to idle")
                turn.outcome = TurnOutcome(turn_id, "", "", None)
                self._end(turn, TurnEnded(outcome="empty", turn_id=turn_id))
                return
            await self._stop_ringing(text)
            # "stop", "never mind": the barge-in already stopped it
            if is_dismissal(text, self.words.code):
                log.info("%r: nothing more to do; back to idle", text)
                if prefetch is not None:
                    await prefetch.cancel()
                turn.outcome = TurnOutcome(turn_id, text, "", None)
                self._end(turn, TurnEnded(outcome="dismissed", turn_id=turn_id))
                return
            turn.early_answer = prefetch is not None
            answering = True
            async with self.assistant.turn(
                    text, source="voice", voice=Voice(self.tts, self.sink), turn_id=turn_id,
                    image=frame.jpeg if frame is not None else None, prefetched=prefetch,
                    show=frame) as running:
                async for event in running:
                    turn.timings.observe(event)
            turn.outcome = running.outcome
        except asyncio.CancelledError as exc:
            turn.interrupted = True
            if CONTINUED in exc.args:  # the whole question will be asked: undo the half's
                self._cancel_timers_since(timers_before)
            if not answering:  # still transcribing: the turn ends here
                if prefetch is not None:
                    await prefetch.cancel()
                self.assistant.record(Interrupted(reason="barge_in", turn_id=turn_id))
                self._end(turn, TurnEnded(outcome="interrupted", turn_id=turn_id))
            raise
        if turn.outcome.error is not None:
            if self.assistant.config.session.speak_errors:
                await self._say(self.words.sorry)
            return
        if not turn.outcome.spoken and not turn.outcome.speech_error:
            # Silence after "got it" would leave the user wondering; small models do
            # sometimes stop at once (or answer only with symbols).
            log.warning("the model gave no speakable answer (%r)", turn.outcome.answer)
            await self._say(self.words.no_answer)
            return
        self._window_s = self.follow_up_s

    def _cancel_timers_since(self, before: set[str]) -> None:
        """Cancel the timers set since ``before`` (the timer ids then): a question that went
        on ("Set a timer for five minutes, [pause] for the pasta") sets its own."""
        for timer in self.assistant.timers.all():
            if timer.timer_id not in before:
                log.info("timer %s set by a question that went on: cancelled", timer.timer_id)
                self.assistant.timers.cancel(timer.timer_id, "continued")

    async def _stop_ringing(self, text: str) -> None:
        """Whatever is said over a ringing timer stops it ("stop"), except what the timer
        skills answer ("cancel the timer", "how much time is left")."""
        if not self.assistant.timers.ringing():
            return
        if is_dismissal(text, self.words.code):
            await self.ringer.stop("stop")
            return
        skills = self.assistant.skills
        intent = (await asyncio.to_thread(skills.recognize, text)
                  if skills is not None else None)
        if intent not in TIMER:
            await self.ringer.stop("voice")

    def _fail(self, turn: VoiceTurn, exc: HeisenbergError) -> None:
        turn.outcome = TurnOutcome(turn.turn_id, "", "", None, exc)
        self._report(exc, turn.turn_id)
        self._end(turn, TurnEnded(outcome="failed", turn_id=turn.turn_id))

    def _end(self, turn: VoiceTurn, ended: TurnEnded) -> None:
        turn.timings.observe(ended)
        self.assistant.record(ended)

    async def _say(self, text: str) -> None:
        """A short message of the assistant's own, after a turn (failed, or no answer)."""
        try:
            audio = await asyncio.to_thread(self.tts.synthesize, text)
            await self.sink.play_text(audio, text)
        except Exception:  # the turn is over and logged; the message is a courtesy
            log.warning("could not say %r", text, exc_info=True)


def is_dismissal(text: str, language_code: str = "en") -> bool:
    """"Stop", "cancel", "never mind", "that's all" (with "please", "thanks", "okay" around
    them; the words of ``language_code``), also said again ("Stop. Stop."): the user wants
    nothing more, so no LLM turn is started."""
    words_of = language(language_code)
    words = words_in(text)
    while words and words[0] in words_of.polite:
        words.pop(0)
    while words and words[-1] in words_of.polite:
        words.pop()
    for dismissal in words_of.dismissals:
        said = dismissal.split()
        if words and words == said * (len(words) // len(said)):
            return True
    return False


