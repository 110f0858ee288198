"""Loads a page in headless chromium through the DevTools protocol and fails on any console
error, uncaught exception or failed resource; saves a screenshot.
Usage: frontpage.py URL SCREENSHOT.png"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

url, screenshot = sys.argv[1], sys.argv[2]
browser = shutil.which("chromium") or shutil.which("chromium-browser")
if browser is None:
    sys.exit("no chromium on PATH: run scripts/setup.sh")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
profile = tempfile.mkdtemp(prefix="observatory-chromium-")
proc = subprocess.Popen(
    [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--disable-dev-shm-usage", f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
     "--window-size=1280,1600", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.time() + 60
    target = None
    while target is None:
        try:
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
            target = next(p for p in pages if p.get("type") == "page")
        except Exception:
            if time.time() > deadline:
                sys.exit("chromium did not open its DevTools endpoint")
            time.sleep(0.2)
    ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60)
    ids = iter(range(1, 10**6))
    problems, loaded = [], False

    def send(method, **params):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        return i

    def pump(until_id=None):
        global loaded
        while True:
            msg = json.loads(ws.recv())
            m = msg.get("method")
            if m == "Runtime.exceptionThrown":
                problems.append("exception: " + msg["params"]["exceptionDetails"].get("text", ""))
            elif m == "Runtime.consoleAPICalled" and msg["params"]["type"] in ("error", "assert"):
                problems.append("console.error: " + json.dumps(msg["params"]["args"]))
            elif m == "Log.entryAdded" and msg["params"]["entry"]["level"] == "error":
                problems.append("log: " + msg["params"]["entry"].get("text", "") + " " + msg["params"]["entry"].get("url", ""))
            elif m == "Network.loadingFailed":
                problems.append("resource failed: " + msg["params"].get("errorText", ""))
            elif m == "Page.loadEventFired":
                loaded = True
            if until_id is not None and msg.get("id") == until_id:
                return msg
            if until_id is None and loaded:
                return None

    for domain in ("Page", "Runtime", "Log", "Network"):
        pump(send(f"{domain}.enable"))
    reply = pump(send("Page.navigate", url=url))
    if "errorText" in reply.get("result", {}):
        sys.exit("navigation failed: " + reply["result"]["errorText"])
    pump()
    status = pump(send("Runtime.evaluate", expression="JSON.stringify({title: document.title, svgs: document.querySelectorAll('svg').length, links: document.querySelectorAll('a').length, width: document.documentElement.scrollWidth})", returnByValue=True))
    facts = json.loads(status["result"]["result"]["value"])
    shot = pump(send("Page.captureScreenshot", format="png", captureBeyondViewport=True))
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["result"]["data"]))
    print(json.dumps({"page": facts, "problems": problems}))
    if problems:
        sys.exit("the page logged errors: " + "; ".join(problems))
finally:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)
