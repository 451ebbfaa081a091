import re
from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    # Parsed, not imported: importing mpush needs its dependencies installed.
    text = (Path(__file__).parent / "mpush" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ in mpush/__init__.py")
    return match.group(1)


setup(
    name="mpush-alloc",
    version=read_version(),
    description="Alloc server for an mpush push cluster (twistd plugin)",
    python_requires=">=3.11",
    # mpush.web.static holds the page, no module: a package of data, listed
    # so that setuptools does not warn (40 lines) that it would be left out.
    packages=[*find_packages(include=["mpush", "mpush.*"]), "mpush.web.static",
              "twisted.plugins"],
    package_data={"mpush": ["config/keys.toml"], "mpush.web.static": ["*"],
                  "twisted": ["plugins/mpush_alloc.py"]},
    include_package_data=True,
    entry_points={"console_scripts": ["mpush-push = mpush.cli.main:run"]},
    install_requires=[
        # 24.7: pipelined answers in order (GHSA-c8m8-j448-xjx7).
        "twisted[tls]>=24.7,<27",
        "txredisapi>=1.4.10,<2",
        "kazoo>=2.9,<3",
        "pyopenssl>=23.2,<27",
        "pyhocon>=0.3.60,<0.4",
        "cryptography>=41,<51",
        "service_identity>=23.1",
        "prometheus-client>=0.17,<1",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-twisted>=1.14,<2",
            "pytest-timeout>=2.2,<3",
            "hypothesis>=6.100,<7",
            # tests/test_fuzz_http.py: reads the OpenAPI 3.1 document directly.
            "schemathesis>=4.0,<5",
            "ruff>=0.5",
            # Drives Debian's chromium (tests/test_page_browser.py); never downloads one.
            "selenium>=4.11,<5",
        ],
    },
)
