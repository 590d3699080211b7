"""Issue-19 checks by hand against a running server with default limits:
slow headers closed, one address's connection cap, wrong-key throttling.

  parasol serve --listen 127.0.0.1:18932 --data-dir "$(mktemp -d)" &
  python3 bench/hardening_check.py 18932
"""
import sys
import socket, time, urllib.request, urllib.error
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 18932
A = ("127.0.0.1", PORT)
t=time.time(); conns=[]
for i in range(50):
    s=socket.create_connection(A); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); conns.append(s)
for s in conns: s.settimeout(30)
closed=[]
for s in conns:
    try:
        d=s.recv(100); closed.append(time.time()-t)
    except Exception as e: closed.append(None)
print("50 half-header connections: all closed:", all(c is not None for c in closed), "last after %.1f s"%max(c for c in closed if c))
# hostile: 300 idle connections from 127.0.0.2
held=[]; refused=0
for i in range(300):
    s=socket.socket(); s.bind(("127.0.0.2",0)); s.connect(A); held.append(s)
time.sleep(0.5)
for s in held[256:]:
    s.settimeout(2)
    try:
        if s.recv(20).startswith(b"HTTP/1.1 503"): refused+=1
    except Exception: pass
lat=[]
for i in range(20):
    t0=time.time(); urllib.request.urlopen("http://127.0.0.1:%d/healthz" % PORT).read(); lat.append(time.time()-t0)
print("with 300 idle connections from 127.0.0.2: refused %d of the 44 past the cap; /healthz from 127.0.0.1 max %.1f ms over 20 calls"%(refused, max(lat)*1000))
bad=0
for i in range(300):
    try: urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/instances" % PORT, headers={"X-API-KEY":"wrong%d"%i}))
    except urllib.error.HTTPError as e: bad += e.code==429
print("300 wrong keys in a row: %d answered 429"%bad)
