# ruff: noqa: E501  (a data table: one application per line)
"""Applications carried by TLS, named by the server name (SNI) the client sent: a small declarative table.

Each ``App`` lists DNS suffixes that belong to one service (a name equal to a suffix, or ending in
``.`` + suffix) and that service's names in nDPI (``benchmarks/ndpi_agreement.py`` counts a match
where nDPI names one).  The longest matching suffix wins (``teams.microsoft.com`` before
``microsoft.com``).  Kept modest on purpose: services whose names an analyst meets in SOC work
and that nDPI's corpus shows; a name proves what the client asked for, not who answered (a
fronted or spoofed SNI says nothing else), and traffic without an SNI is not named.

>>> application_of(np.array([b"mmg.whatsapp.net", b"teams.microsoft.com", b"example.org", b""]))
['whatsapp', 'teams', None, None]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class App:
    """One application: its name (ECS ``network.application``, lower case), DNS suffixes, nDPI names."""

    name: str
    suffixes: tuple[str, ...]
    ndpi: tuple[str, ...]


APPS: tuple[App, ...] = (
    App("amazon", ("amazon.com", "ssl-images-amazon.com", "media-amazon.com", "amazon.de", "amazon.co.uk"), ("Amazon", "AmazonVideo", "AmazonAlexa")),
    App("aws", ("amazonaws.com",), ("AmazonAWS", "Amazon")),
    App("opera-vpn", ("sec-tunnel.com",), ("OperaVPN",)),
    App("microsoft", ("microsoft.com", "microsoftonline.com", "office.com", "office365.com", "live.com", "windows.net", "msn.com", "bing.com"),
        ("Microsoft", "Microsoft365", "Outlook", "Azure", "MS_OneDrive", "WindowsUpdate", "Teams", "Skype_Teams", "Xbox")),
    App("teams", ("teams.microsoft.com", "teams.live.com", "skype.com", "microsoftstream.com"), ("Teams", "Skype_Teams", "Skype_TeamsCall")),
    App("zoom", ("zoom.us",), ("Zoom",)),
    App("apple", ("apple.com", "icloud.com", "mzstatic.com", "apple-cloudkit.com"),
        ("Apple", "AppleiCloud", "AppleiTunes", "AppleStore", "ApplePush", "AppleSiri")),
    App("google", ("google.com", "googleapis.com", "gstatic.com", "googleusercontent.com", "app-measurement.com", "gvt1.com", "gvt2.com", "googlezip.net"),
        ("Google", "GoogleServices", "PlayStore", "GoogleDrive", "GMail", "GoogleMaps", "GoogleCall", "GoogleChat", "GoogleMeet",
         "GoogleClassroom", "DataSaver", "Crashlytics", "YouTube")),
    App("youtube", ("youtube.com", "googlevideo.com", "ytimg.com", "youtu.be"), ("YouTube", "YouTubeUpload")),
    App("google-dns", ("dns.google",), ("DoH_DoT",)),
    App("facebook", ("facebook.com", "fbcdn.net", "facebook.net", "fb.com", "messenger.com"), ("Facebook", "FacebookMessenger", "FacebookVoip", "Instagram")),
    App("instagram", ("instagram.com", "cdninstagram.com"), ("Instagram",)),
    App("whatsapp", ("whatsapp.net", "whatsapp.com"), ("WhatsApp", "WhatsAppFiles", "WhatsAppCall")),
    App("telegram", ("telegram.org", "t.me"), ("Telegram",)),
    App("viber", ("viber.com",), ("Viber",)),
    App("steam", ("steampowered.com", "steamcommunity.com", "steamstatic.com"), ("Steam",)),
    App("playstation", ("playstation.com", "playstation.net"), ("Playstation",)),
    App("vk", ("vk.com", "userapi.com", "vk.me"), ("VK",)),
    App("yandex", ("yandex.ru", "yandex.net", "yandex.com", "yandex.kz", "yastatic.net"),
        ("Yandex", "YandexMusic", "YandexMetrika", "YandexMarket", "YandexMail", "YandexDisk", "YandexCloud", "YandexDirect")),
    App("huawei", ("huawei.com", "hicloud.com", "dbankcloud.com"), ("HuaweiCloud",)),
    App("cloudflare-warp", ("cloudflareclient.com",), ("CloudflareWarp",)),
    App("netflix", ("netflix.com", "nflxvideo.net", "nflximg.net"), ("NetFlix",)),
    App("tiktok", ("tiktok.com", "tiktokcdn.com", "tiktokv.com"), ("TikTok",)),
    App("twitter", ("twitter.com", "twimg.com", "x.com"), ("Twitter",)),
    App("snapchat", ("snapchat.com", "sc-cdn.net"), ("Snapchat",)),
    App("dropbox", ("dropbox.com", "dropboxapi.com"), ("Dropbox",)),
    App("github", ("github.com", "githubusercontent.com"), ("Github",)),
    App("spotify", ("spotify.com", "scdn.co"), ("Spotify",)),
    App("anydesk", ("anydesk.com",), ("AnyDesk",)),
    App("ebay", ("ebay.com",), ("eBay",)),
    App("bloomberg", ("bloomberg.com",), ("Bloomberg",)),
    App("iqiyi", ("iqiyi.com", "iqiyipic.com", "qy.net"), ("iQIYI",)),
    App("waze", ("waze.com",), ("Waze",)),
)
"""The SNI application table."""
APP_NAMES: tuple[str | None, ...] = (None,) + tuple(a.name for a in APPS)
"""Application code -> name (0: none)."""
_BY_LENGTH = sorted(((s.encode(), i + 1) for i, a in enumerate(APPS) for s in a.suffixes), key=lambda x: -len(x[0]))


def application_codes(names: np.ndarray) -> np.ndarray:
    """Per server name (bytes, b"" none): the code of the application whose suffix it ends with (0: none).

    One ``endswith`` ufunc pass per suffix over all names (a loop over the table, not over flows).
    """
    names = np.asarray(names)
    code = np.zeros(names.shape[0], dtype=np.uint8)
    if not names.size:
        return code
    low = np.char.lower(names.astype("S"))
    todo = np.flatnonzero(low != b"")
    for suffix, c in _BY_LENGTH:  # longest first: the first suffix that matches a name names it
        if not todo.size:
            break
        sub = low[todo]
        hit = np.char.endswith(sub, b"." + suffix) | (sub == suffix)
        code[todo[hit]] = c
        todo = todo[~hit]
    return code


def application_of(names: np.ndarray) -> list[str | None]:
    """Application names of server names (see ``application_codes``)."""
    return [APP_NAMES[c] for c in application_codes(names).tolist()]
