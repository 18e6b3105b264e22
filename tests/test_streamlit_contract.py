"""Guards for the one private Streamlit API the app relies on (the versions are locked, so this
fails on purpose the moment an upgrade of the lock changes it).

`pages/_shared.py::boot()` switches off `PagesManager.uses_pages_directory`: a folder named
`pages/` next to app.py puts Streamlit into its legacy multipage mode until app.py has called
`st.navigation` once, so the very first visit of a fresh server through a page link would run
that page without app.py (tests/e2e journey 0 shows what a visitor would get). Streamlit has no
public switch for it; the supported alternative is a page folder with another name.
"""
import inspect

from streamlit.commands import navigation
from streamlit.runtime import pages_manager
from streamlit.runtime.scriptrunner import script_runner

ATTR = "streamlit.runtime.pages_manager.PagesManager.uses_pages_directory"
FIX = ("pages/_shared.py::boot() writes it: check the new Streamlit's legacy pages/ handling and update boot(), "
       "or rename pages/ to stop relying on it")


def test_pages_manager_still_has_the_legacy_flag_boot_switches_off():
    assert "uses_pages_directory" in vars(pages_manager.PagesManager), f"{ATTR} is gone. {FIX}"


def test_the_script_runner_still_reads_the_flag_to_pick_legacy_mode():
    src = inspect.getsource(script_runner)
    assert "PagesManager.uses_pages_directory" in src and "_mpa_v1" in src, (
        f"Streamlit's script runner no longer chooses legacy mode by {ATTR}. {FIX}")


def test_st_navigation_still_switches_the_flag_off_itself():
    src = inspect.getsource(navigation)
    assert "PagesManager.uses_pages_directory = False" in src, (
        f"st.navigation no longer sets {ATTR} = False, so boot() may not match Streamlit any more. {FIX}")


def test_boot_uses_that_flag():
    import pages._shared as shared
    assert "PagesManager.uses_pages_directory" in inspect.getsource(shared.boot)
