// The bearer token: pasted in the sign-in view (development) or handed over in the URL
// fragment (#access_token=..., as an OpenID Connect implicit or redirect login does). Kept
// in sessionStorage only: it ends with the tab.

const KEY = "wg.console.token";

/** Take a token from the fragment, if one is there, and remove it from the address bar. */
export function takeTokenFromFragment(location = window.location, history = window.history) {
  const hash = location.hash.startsWith("#") ? location.hash.slice(1) : location.hash;
  if (!hash.includes("access_token=")) return null;
  const params = new URLSearchParams(hash);
  const token = params.get("access_token");
  history.replaceState(null, "", `${location.pathname}${location.search}#/board`);
  return token || null;
}

export function getToken() {
  return sessionStorage.getItem(KEY);
}

export function setToken(token) {
  sessionStorage.setItem(KEY, token.trim());
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
}

/** The token's claims, unverified (the API verifies); null if it is not a JWT. */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    return JSON.parse(atob(padded));
  } catch {
    return null;
  }
}
