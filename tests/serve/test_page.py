#!/usr/bin/env python3
"""ox serve's chat page in a real headless browser: Debian's chromium and
chromedriver, driven by selenium (PyPI) with the system browser's path (no
browser download). The test types a message, sends it, and watches the
reply appear piece by piece (several lengths seen before it ends), then the
tokens-per-second line. Environment as test_serve.py."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_serve import KEY, Server, check, model_path, passed  # noqa: E402

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    print("FAIL: the selenium package is missing: scripts/test.sh installs it")
    sys.exit(1)

CHROMIUM = os.environ.get("OX_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("OX_CHROMEDRIVER", "/usr/bin/chromedriver")


def main():
    for path in (CHROMIUM, DRIVER):
        if not os.access(path, os.X_OK):
            print(f"FAIL: {path} is missing: scripts/deps.sh installs Debian's chromium and "
                  "chromium-driver")
            sys.exit(1)
    srv = Server(model_path(), "--api-key", KEY, "--ctx", "512")
    driver = None
    try:
        srv.wait_ready()
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
        driver.get(srv.url + "/")
        check("page loads", driver.title == "OpenXPU chat", driver.title)
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "input").send_keys("Write a short poem about the sea.")
        driver.find_element(By.ID, "send").click()
        lengths, text = set(), ""
        deadline = time.time() + 120
        while time.time() < deadline:
            replies = driver.find_elements(By.CSS_SELECTOR, "#log .assistant, #log .error")
            if replies:
                text = replies[-1].text
                lengths.add(len(text))
                if "error" in replies[-1].get_attribute("class"):
                    break
                if text and driver.find_element(By.ID, "send").is_enabled():
                    break
            time.sleep(0.02)
        check("the reply appears", text != "" and not driver.find_elements(By.CSS_SELECTOR,
                                                                          "#log .error"), text)
        check("the reply streams (several lengths seen)", len(lengths - {0}) >= 3, sorted(lengths))
        stats = driver.find_element(By.ID, "stats").text
        check("tokens per second shown", "tokens/s" in stats, stats)
    finally:
        if driver:
            driver.quit()
        srv.stop()
    print(f"all {len(passed)} checks passed")


if __name__ == "__main__":
    main()
