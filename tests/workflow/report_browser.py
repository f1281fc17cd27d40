"""Open a Snakemake HTML report in headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) and visit it as a reader would: the front page,
every category and subcategory of the menu, every item of each (each value of a label
toggle too) and a search; record the console errors and every view that showed nothing.

    reason = unavailable()          # None, or why the browser cannot run here
    visit = visit_report(path, shots=folder)
    visit.errors, visit.empty, visit.download_only, visit.shown
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000")
# every uncaught error and rejected promise of the page, kept where the test can read it
ERROR_HOOK = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
"""
SEARCH = "acdc"  # a term every report of the workflow matches (its ACDC items)
TABLE_PAGES = ("results/tables/", "results/stats/")  # pages that must show a table with cells
SEARCH_ITEMS = 3  # items of the search results viewed (each was viewed in its category)


def unavailable() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} not found (Debian: apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


@dataclass
class Visit:
    errors: list[str] = field(default_factory=list)        # console errors, with where they came
    empty: list[str] = field(default_factory=list)         # views that showed nothing
    download_only: list[str] = field(default_factory=list) # items whose eye button only downloads
    shown: dict[str, str] = field(default_factory=dict)    # result path -> what showed it (img, html)
    categories: list[str] = field(default_factory=list)
    search_rows: int = 0


def _driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    return driver


class _Reader:
    """One browser session on one report."""

    def __init__(self, driver, url: str, visit: Visit, shots: Path | None):
        self.driver, self.url, self.visit, self.shots = driver, url, visit, shots
        self.n_shots = 0

    # ------------------------------------------------------------ page plumbing
    def open(self) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(self.url)
        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return typeof app !== 'undefined' && document.querySelector('#app li') !== null"))
        self.collect("opening the report")

    def home(self) -> None:
        """Back to the menu through the breadcrumbs' home link (no reload of the page)."""
        from selenium.webdriver.common.by import By

        home = self.driver.find_elements(By.CSS_SELECTOR, "nav ol li:first-child a")
        if not home:  # the page is gone (e.g. an error unmounted it): open it again
            self.open()
        elif self.driver.execute_script("return app.state.navbarMode") != "menu":
            home[0].click()
        self.collect("back to the menu")

    def collect(self, where: str) -> None:
        """Move the console's errors and the page's uncaught ones into the visit."""
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.visit.errors.append(f"{where}: {entry.get('message')}")
        for message in self.driver.execute_script("var e = window.__errors || []; window.__errors = []; return e;"):
            self.visit.errors.append(f"{where}: {message}")

    def click_link(self, text: str) -> bool:
        """Click the navigation link whose text is `text`; False when there is none."""
        from selenium.webdriver.common.by import By

        literal = "concat('" + text.replace("'", "', \"'\", '") + "', '')"
        links = self.driver.find_elements(By.XPATH, f"//a[normalize-space(.)={literal}]")
        if not links:
            return False
        links[0].click()
        return True

    def shot(self, name: str) -> None:
        if self.shots is None:
            return
        self.n_shots += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
        self.driver.save_screenshot(str(self.shots / f"{self.n_shots:03d}_{safe}.png"))

    # ------------------------------------------------------------ what a view shows
    def check_view(self, where: str) -> None:
        """The content pane after a click: an image that decoded, or a framed page with text."""
        from selenium.webdriver.common.by import By

        state = self.driver.execute_script("return {content: app.state.content, path: app.state.resultPath}")
        path = state["path"] or where
        if state["content"] == "img":
            ok = self.driver.execute_script(
                "var i = document.querySelector('img[src^=\"data:\"]');"
                "return i !== null && i.complete && i.naturalWidth > 0 && i.naturalHeight > 0;")
            (self.visit.shown.__setitem__(path, "img") if ok else self.visit.empty.append(f"{where}: image did not load"))
        elif state["content"] in ("html", "pdf"):
            frames = self.driver.find_elements(By.CSS_SELECTOR, "iframe")
            if not frames:
                self.visit.empty.append(f"{where}: no frame")
            else:
                self.driver.switch_to.frame(frames[0])
                try:
                    text, cells = self.driver.execute_script(
                        "return document.body ? [document.body.innerText.slice(0, 2000),"
                        " document.querySelectorAll('td').length] : ['', 0]")
                finally:
                    self.driver.switch_to.default_content()
                if text.strip() and (cells or not path.startswith(TABLE_PAGES)):
                    self.visit.shown[path] = "html"
                else:
                    self.visit.empty.append(f"{where}: the framed page is empty ({cells} table cells)")
        else:
            self.visit.empty.append(f"{where}: content '{state['content']}' after clicking an item")
        self.collect(where)
        self.shot(path)

    def results_pane_empty(self) -> bool:
        from selenium.webdriver.common.by import By

        return not self.driver.find_elements(By.CSS_SELECTOR, "nav table tbody tr, table tbody tr")

    def visit_rows(self, where: str, limit: int | None = None) -> int:
        """Click each item's eye button in the navigation's results table (each toggle value
        too; the first `limit` items of each when given)."""
        from selenium.webdriver.common.by import By

        toggles = self.driver.find_elements(By.CSS_SELECTOR, "fieldset label")
        values = [t.text for t in toggles] or [None]
        n = 0
        for value in values:
            if value is not None:
                next(t for t in self.driver.find_elements(By.CSS_SELECTOR, "fieldset label") if t.text == value).click()
                self.collect(f"{where}, toggle {value}")
            rows = self.driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
            if not rows:
                self.visit.empty.append(f"{where}: no items listed")
                self.shot(f"{where}_empty")
            for i in range(len(rows) if limit is None else min(limit, len(rows))):
                row = self.driver.find_elements(By.CSS_SELECTOR, "table tbody tr")[i]
                label = self.driver.execute_script(
                    "return Array.from(arguments[0].querySelectorAll('td')).map(td => td.innerText.trim())"
                    ".filter(t => t).join(' / ')", row)
                button = row.find_elements(By.CSS_SELECTOR, "td:last-child a")[0]
                if button.get_attribute("download"):
                    self.visit.download_only.append(f"{where}: {label} ({button.get_attribute('download')})")
                    continue
                button.click()
                self.check_view(f"{where}: {label}" + (f" [{value}]" if value else ""))
                n += 1
        return n

    # ------------------------------------------------------------ the tour
    def tour(self) -> None:
        self.open()
        self.shot("front page")
        for item in ("Workflow", "Statistics", "About"):
            self.click_link(item)
            self.collect(f"menu '{item}'")
        categories = self.driver.execute_script(
            "return Object.keys(categories).sort((a, b) => a.localeCompare(b)).map("
            "c => [c, Object.keys(categories[c]).sort((a, b) => a.localeCompare(b))])")
        for category, subcategories in categories:
            self.visit.categories.append(category)
            for sub in (subcategories if len(subcategories) > 1 else [None]):
                self.home()
                if not self.click_link(category):
                    self.visit.empty.append(f"menu: no link '{category}'")
                    continue
                where = category + (f" / {sub}" if sub else "")
                if sub is not None and not self.click_link(sub):
                    self.visit.empty.append(f"{category}: no link '{sub}'")
                    continue
                self.collect(where)
                self.shot(where)
                self.visit_rows(where)
        self.search(SEARCH)

    def search(self, term: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.home()
        box = self.driver.find_elements(By.CSS_SELECTOR, "input[placeholder^='Search']")
        if not box:
            self.visit.empty.append("no search box")
            return
        box[0].send_keys(term, Keys.ENTER)
        self.collect(f"search '{term}'")
        self.shot(f"search {term}")
        self.visit.search_rows = self.visit_rows(f"search '{term}'", limit=SEARCH_ITEMS)


def visit_report(report: str | Path, shots: str | Path | None = None) -> Visit:
    """Tour the report (see the module docstring); screenshots into `shots` when given."""
    visit = Visit()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    if shots is not None:
        Path(shots).mkdir(parents=True, exist_ok=True)
    driver = _driver(profile)
    try:
        _Reader(driver, Path(report).resolve().as_uri(), visit, Path(shots) if shots else None).tour()
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return visit
