app_name = "vapisync"
urlpatterns: list = []
