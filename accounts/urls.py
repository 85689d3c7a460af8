"""Account and key pages, included at the site root. The account URL names (`login`,
`logout`, `password_reset`...) are global because Django's auth views reverse them
so; the keys page is the `keys` namespace."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import views

key_patterns = [
    path("", views.key_list, name="list"),
    path("new/", views.key_create, name="create"),
    path("<str:public_id>/revoke/", views.key_revoke, name="revoke"),
    path("<str:public_id>/rotate/", views.key_rotate, name="rotate"),
]

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("keys/", include((key_patterns, "keys"))),
]
