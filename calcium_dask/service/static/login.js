"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const response = await fetch("/api/login", {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token: document.getElementById("token").value.trim()}),
    });
    if (response.ok) {
      window.location.assign("/");
    } else {
      const body = await response.json().catch(() => ({}));
      error.textContent = body.detail || "this token is not valid";
    }
  });
});
