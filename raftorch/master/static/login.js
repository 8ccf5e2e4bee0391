// The login page: `raftctl dashboard` hands the token in the address's fragment (#token=...),
// which browsers never send to a server. Log in with it, and drop it from the address bar.
"use strict";

function loginFromFragment() {
  const match = /[#&]token=([^&]+)/.exec(window.location.hash);
  if (!match) return;
  history.replaceState(null, "", window.location.pathname);
  document.getElementById("token").value = decodeURIComponent(match[1]);
  document.getElementById("login").submit();
}

window.addEventListener("hashchange", loginFromFragment);
loginFromFragment();
